"""Explicit vector code for the compiled kernels (numba intrinsics that emit LLVM IR).

A decoding step multiplies a few rows of activations (one per stream) by every weight of the
model: ~200 MB of int8 weight slices for the embedded model, read once a step. oneDNN's int8
GEMM (torch._int_mm) reads them at ~10-13 GB/s at such shapes on the development CPUs, and
numba's own loops fared no better: LLVM's vectorizer picks 128-bit vectors for a loop with many
sums, and nothing asks the memory for the next rows early. `tile(R, C)` does both:

- the R x C dot products of R int16 activation rows and C int8 weight rows over k0..k1, in
  512-bit vectors (32 int16 lanes). Each step sign-extends 32 weights, multiplies them with
  each activation vector and adds adjacent pairs into int32 lanes: the pattern LLVM lowers to
  `vpmaddwd`, or `vpdpwssd` on CPUs with AVX-512 VNNI, and to whatever a CPU without them has
  (the IR is generic: it runs on any target numba does; tests/test_exact.py compiles it for
  AVX2 and plain x86-64 and compares the integers);
- each step also asks for the cache lines of the weights a few tiles ahead (`llvm.prefetch`),
  so that they stream from memory at close to its bandwidth: 29 GB/s at one row, against
  _int_mm's 13 (docs/benchmarks.md §2; without the prefetches a prototype read about half as
  fast).

Exactness: every operation is on integers modulo 2^32, which is associative and commutative,
so the order in which LLVM or the CPU adds the products cannot matter; the result is the exact
sum whenever the exact sum of any subset of the terms fits int32. The callers bound that
(kernels.py, `small_product`: a chunk of k short enough that |a| |w| k < 2^31).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 32  # int16 lanes in a 512-bit vector: the k-step of `tile`

_i8, _i16, _i32, _i64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)


def _prefetch_line(builder, address) -> None:
    """llvm.prefetch(address, read, keep in all cache levels, data): a hint, never a fault."""
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [_i8.as_pointer(), _i32, _i32, _i32]), "llvm.prefetch.p0i8")
    builder.call(function, [builder.inttoptr(address, _i8.as_pointer()), ir.Constant(_i32, 0),
                            ir.Constant(_i32, 3), ir.Constant(_i32, 1)])


_TILES: dict = {}


def tile(rows: int, columns: int, runs: tuple, weight_bits: int = 8):
    """The intrinsic for an R x C tile (R = rows, C = columns), made once per shape:

        sums = tile(a, w, i, (j_1, ..., j_C), k0, k1, ahead)

    a: int16 [m, K] activations (rows contiguous), w: int8 [N, K] weight rows (rows contiguous;
    int16 with weight_bits=16, as the attention kernel's softmax weights are);
    returns the R * C int32 sums  a[i + r, k0:k1] . w[j_c, k0:k1]  in row-major order (r, c).
    k1 - k0 must be a multiple of LANES (the caller adds any tail).

    Each step also prefetches the weights `ahead` bytes further on, which the caller will want a
    few tiles later. `runs` says where they lie: pairs (c, count) for weight rows j_c ..
    j_c + count - 1 that are consecutive in memory (count * K bytes); a step reads LANES bytes of
    each, so it prefetches count * LANES bytes of such a run, one cache line per 64."""
    key = (rows, columns, runs, weight_bits)
    if key not in _TILES:
        _TILES[key] = _make_tile(rows, columns, runs, weight_bits)
    return _TILES[key]


def _make_tile(R: int, C: int, runs: tuple, weight_bits: int):
    vector16 = ir.VectorType(_i16, LANES)
    vector8 = ir.VectorType(_i8 if weight_bits == 8 else _i16, LANES)  # the weights' vector
    weight_bytes = weight_bits // 8
    wide, pairs = ir.VectorType(_i32, LANES), ir.VectorType(_i32, LANES // 2)
    even = ir.Constant(pairs, [2 * lane for lane in range(LANES // 2)])
    odd = ir.Constant(pairs, [2 * lane + 1 for lane in range(LANES // 2)])

    @intrinsic
    def tile_intrinsic(typingctx, a, w, i, weight_rows, k0, k1, ahead):
        signature = types.UniTuple(types.int32, R * C)(a, w, i, weight_rows, k0, k1, ahead)

        def codegen(context, builder, sig, args):
            a_value, w_value, i_value, rows_value, k0_value, k1_value, ahead_value = args
            activations = context.make_array(sig.args[0])(context, builder, a_value)
            weights = context.make_array(sig.args[1])(context, builder, w_value)
            a_stride = builder.extract_value(activations.strides, 0)  # bytes
            w_stride = builder.extract_value(weights.strides, 0)
            a_base = builder.ptrtoint(activations.data, _i64)
            w_base = builder.ptrtoint(weights.data, _i64)
            a_rows = [builder.add(a_base, builder.mul(builder.add(i_value, ir.Constant(_i64, r)), a_stride))
                      for r in range(R)]
            w_rows = [builder.add(w_base, builder.mul(builder.extract_value(rows_value, c), w_stride))
                      for c in range(C)]
            zero = ir.Constant(pairs, None)
            before = builder.basic_block
            loop = builder.append_basic_block("tile.loop")
            done = builder.append_basic_block("tile.done")
            builder.cbranch(builder.icmp_signed("<", k0_value, k1_value), loop, done)

            builder.position_at_end(loop)
            k = builder.phi(_i64)
            k.add_incoming(k0_value, before)
            sums = []
            for _ in range(R * C):
                phi = builder.phi(pairs)
                phi.add_incoming(zero, before)
                sums.append(phi)
            weight_vectors = []
            for c in range(C):
                offset = k if weight_bytes == 1 else builder.shl(k, ir.Constant(_i64, 1))
                address = builder.add(w_rows[c], offset)
                loaded = builder.load(builder.inttoptr(address, vector8.as_pointer()), align=weight_bytes)
                weight_vectors.append(builder.sext(loaded, wide))
            for c, count in runs:  # the run's bytes k * count.. of the tiles `ahead` further on
                start = builder.add(builder.add(w_rows[c], ahead_value), builder.mul(k, ir.Constant(_i64, count)))
                for line in range(0, count * LANES, 64):
                    _prefetch_line(builder, builder.add(start, ir.Constant(_i64, line)))
            updated = []
            for r in range(R):
                address = builder.add(a_rows[r], builder.shl(k, ir.Constant(_i64, 1)))
                activation = builder.sext(builder.load(builder.inttoptr(address, vector16.as_pointer()), align=2),
                                          wide)
                for c in range(C):
                    product = builder.mul(activation, weight_vectors[c])  # |a w| < 2^31: exact
                    pair = builder.add(builder.shuffle_vector(product, product, even),
                                       builder.shuffle_vector(product, product, odd))
                    updated.append(builder.add(sums[r * C + c], pair))
            k_next = builder.add(k, ir.Constant(_i64, LANES))
            end = builder.basic_block
            k.add_incoming(k_next, end)
            for phi, value in zip(sums, updated):
                phi.add_incoming(value, end)
            builder.cbranch(builder.icmp_signed("<", k_next, k1_value), loop, done)

            builder.position_at_end(done)
            finals = []
            for value in updated:
                phi = builder.phi(pairs)
                phi.add_incoming(zero, before)
                phi.add_incoming(value, end)
                finals.append(phi)
            reduce = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_i32, [pairs]),
                                                    f"llvm.vector.reduce.add.v{LANES // 2}i32")
            return context.make_tuple(builder, sig.return_type, [builder.call(reduce, [v]) for v in finals])

        return signature, codegen

    return tile_intrinsic
