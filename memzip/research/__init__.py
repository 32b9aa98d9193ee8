"""The research tools: measurements around the archiver, not archiving (`memzip bench`,
`capacity`, `bench-bytes`, `bench-speed`, `bench-memory`; cli.py registers them).

    bench.py      recipes judged by greedy decoding; bytes, speed and memory benches
    capacity.py   how much text one [mem] vector holds, by the paper's protocol and greedy decoding
    samples.py    the texts they run on (book passages, random words)
"""
