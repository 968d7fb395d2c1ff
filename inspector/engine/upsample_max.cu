// upsample_max.cu - the anomaly-map head on the GPU: per-scale 1 - cos maps -> full map -> image max.
//
// Exact re-association of the reference head (see inspector/core/map_head.py):
//
//     full[n] = sum_s  L_s @ m_s[n] @ R_s^T      L_s = G_H A_s (H x h_s),  R_s^T = (G_W B_s)^T (w_s x W)
//
// where A_s / B_s are the bilinear (align_corners=True) matrices and G_H / G_W the Gaussian blur
// (sigma 4, 33 taps, scipy 'reflect' boundary folded in). The operators are uploaded once, already
// concatenated over the scales (K = h_0 + h_1 + h_2, J = w_0 + w_1 + w_2):
//
//     left_t   K x H   rows [L_0^T; L_1^T; L_2^T]   (L transposed, so tile loads are coalesced)
//     right_t  J x W   rows [R_0^T; R_1^T; R_2^T]
//
// Three launches on one stream (compiled at run time with NVRTC, cuda.core.Program):
//
//   1. rows_times_right      T[n, k, x] = sum_j m_s[n, i, j] * R_s^T[j, x]   (k = row i of scale s)
//                            N x K x W scratch; also resets keys[n] to ORDERED_MIN.
//   2. left_times_rows_max   acc[n, y, x] = sum_k L^T[k, y] * T[n, k, x]     (one tiled SGEMM per
//                            image, 64 x 64 output tile per block, 4 x 4 per thread), then per pixel
//                            (the epilogue, p = y * W + x):
//                              v = acc;  if (mean) v = (v - mean[p]) * inv_std[p]   (two float32
//                                  ops, rounded separately: exactly numpy's GoodStats.apply)
//                              the map (when write_map != 0) gets v, every pixel;
//                              the max takes v only where valid == 0 (no mask) or
//                                  valid[n * valid_stride + p] != 0 (the valid region).
//                            The block's max goes to keys[n] with atomicMax on an order-preserving
//                            int key; a block without a valid pixel leaves keys[n] alone.
//   3. decode_scores         scores[n] = float of keys[n].
//
// Order-preserving key: for IEEE-754 float bits b (as int32), key = b >= 0 ? b : b ^ 0x7FFFFFFF is
// strictly increasing in the float value (-0 < +0 by one step), so atomicMax on keys is a float max
// for ANY finite or infinite value, negative ones included (fp16 engines and float rounding can
// produce values slightly below 0). Fail closed, as core.scoring.image_scores: a non-finite value
// (NaN, +-inf) at a pixel that enters the max is taken as NaN, and NaN is canonicalised to key
// 0x7FFFFFFF (the largest key), so the score is NaN. A key never written (ORDERED_MIN: the image
// has no valid pixel) decodes to a NaN as well. Since every value entering the max is finite or
// NaN, a block max of -inf (the neutral element) means "no valid pixel here": no atomicMax.
//
// Inputs: float32, C-contiguous; m_s N x h_s x w_s (unused scales: h = w = 0, pointer 0).
// Good-part statistics mean, inv_std float32 H x W (the output size), both 0 = no normalisation.
// Valid region uint8 (0 = not scored): N x H x W with valid_stride = H * W, or one H x W mask for
// the whole batch with valid_stride = 0; valid = 0 (null) = every pixel is scored.
// Outputs: scores float32 N; out_map float32 N x H x W (only when write_map != 0; normalised, and
// written at every pixel, valid or not: the host fills the outside).
// Tile constants are passed by the host (cuda_head.py) as macros; the defaults below must match it.

#ifndef BM
#define BM 64   // output rows (y) per block
#endif
#ifndef BN
#define BN 64   // output columns (x) per block
#endif
#ifndef BK
#define BK 16   // K (low-res rows over all scales) per shared-memory tile
#endif
#ifndef TX
#define TX 16   // threads per block along x
#endif
#ifndef TY
#define TY 16   // threads per block along y
#endif
#ifndef S1X
#define S1X 64  // stage 1 block: threads along x
#endif
#ifndef S1Y
#define S1Y 4   // stage 1 block: threads along k
#endif

#define RM (BM / TY)            // output rows per thread
#define RN (BN / TX)            // output columns per thread
#define NTHREADS (TX * TY)
#define ORDERED_MIN (-2147483647 - 1)
#define NAN_KEY 0x7FFFFFFF

#if (BM % TY) != 0 || (BN % TX) != 0 || ((BK * BM) % (TX * TY)) != 0 || ((BK * BN) % (TX * TY)) != 0 \
    || (NTHREADS & (NTHREADS - 1)) != 0
#error "tile sizes must divide evenly and TX * TY must be a power of two"
#endif

typedef unsigned long long u64;

__device__ __forceinline__ int ordered_key(float f)
{
    if (f != f) return NAN_KEY;                 // NaN -> largest key
    const int b = __float_as_int(f);
    return b >= 0 ? b : (b ^ 0x7FFFFFFF);
}

__device__ __forceinline__ float key_to_float(int k)
{
    return __int_as_float(k >= 0 ? k : (k ^ 0x7FFFFFFF));
}

// a value entering the max: finite values as they are, NaN and +-inf as NaN (fail closed)
__device__ __forceinline__ float finite_or_nan(float v)
{
    return fabsf(v) <= 3.402823466e+38f ? v : __int_as_float(0x7fc00000);
}

// max that propagates NaN (once NaN, stays NaN)
__device__ __forceinline__ float nan_max(float m, float v)
{
    return (v > m || v != v) ? v : m;
}

extern "C" __global__ void __launch_bounds__(S1X * S1Y)
rows_times_right(const float* __restrict__ m0, const float* __restrict__ m1, const float* __restrict__ m2,
                 int h0, int w0, int h1, int w1, int h2, int w2,
                 const float* __restrict__ right_t, float* __restrict__ t_cat, int* __restrict__ keys, int W)
{
    const int x = blockIdx.x * S1X + threadIdx.x;
    const int k = blockIdx.y * S1Y + threadIdx.y;
    const int n = blockIdx.z;
    const int K = h0 + h1 + h2;
    if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0 && threadIdx.y == 0)
        keys[n] = ORDERED_MIN;                  // stage 2 runs after this kernel on the same stream
    if (x >= W || k >= K) return;

    const float* m;
    int i, w, j0;                               // row in scale s, its width, its first row of right_t
    if (k < h0)           { m = m0 + (u64)n * h0 * w0; i = k;           w = w0; j0 = 0; }
    else if (k < h0 + h1) { m = m1 + (u64)n * h1 * w1; i = k - h0;      w = w1; j0 = w0; }
    else                  { m = m2 + (u64)n * h2 * w2; i = k - h0 - h1; w = w2; j0 = w0 + w1; }

    const float* row = m + (u64)i * w;
    const float* col = right_t + (u64)j0 * W + x;
    float acc = 0.0f;
    for (int j = 0; j < w; ++j)
        acc = fmaf(row[j], col[(u64)j * W], acc);
    t_cat[((u64)n * K + k) * W + x] = acc;
}

extern "C" __global__ void __launch_bounds__(TX * TY)
left_times_rows_max(const float* __restrict__ left_t, const float* __restrict__ t_cat, int* __restrict__ keys,
                    float* __restrict__ out_map, const float* __restrict__ mean, const float* __restrict__ inv_std,
                    const unsigned char* __restrict__ valid, int valid_stride, int K, int H, int W, int write_map)
{
    __shared__ float ls[BK][BM];                // L^T tile: ls[c][r] = L^T[k0 + c, y0 + r]
    __shared__ float ts[BK][BN];                // T tile:   ts[c][r] = T[n, k0 + c, x0 + r]
    __shared__ float red[NTHREADS];

    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * TX + tx;
    const int x0 = blockIdx.x * BN, y0 = blockIdx.y * BM, n = blockIdx.z;
    const float* tn = t_cat + (u64)n * K * W;

    float acc[RM][RN];
#pragma unroll
    for (int a = 0; a < RM; ++a)
#pragma unroll
        for (int b = 0; b < RN; ++b) acc[a][b] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += BK) {
#pragma unroll
        for (int p = 0; p < (BK * BM) / NTHREADS; ++p) {
            const int e = tid + p * NTHREADS, c = e / BM, r = e % BM;
            const int k = k0 + c, y = y0 + r;
            ls[c][r] = (k < K && y < H) ? left_t[(u64)k * H + y] : 0.0f;
        }
#pragma unroll
        for (int p = 0; p < (BK * BN) / NTHREADS; ++p) {
            const int e = tid + p * NTHREADS, c = e / BN, r = e % BN;
            const int k = k0 + c, x = x0 + r;
            ts[c][r] = (k < K && x < W) ? tn[(u64)k * W + x] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float av[RM], bv[RN];
#pragma unroll
            for (int a = 0; a < RM; ++a) av[a] = ls[kk][ty + a * TY];
#pragma unroll
            for (int b = 0; b < RN; ++b) bv[b] = ts[kk][tx + b * TX];
#pragma unroll
            for (int a = 0; a < RM; ++a)
#pragma unroll
                for (int b = 0; b < RN; ++b) acc[a][b] = fmaf(av[a], bv[b], acc[a][b]);
        }
        __syncthreads();
    }

    const float neg_inf = __int_as_float(0xff800000);
    const unsigned char* vn = valid ? valid + (u64)n * valid_stride : valid;
    float* map_n = write_map ? out_map + (u64)n * H * W : out_map;
    float local = neg_inf;                      // -inf: neutral for the max
#pragma unroll
    for (int a = 0; a < RM; ++a) {
        const int y = y0 + ty + a * TY;
        if (y >= H) continue;
#pragma unroll
        for (int b = 0; b < RN; ++b) {
            const int x = x0 + tx + b * TX;
            if (x < W) {
                const int p = y * W + x;            // < H * W, an int (host: H * W < 2^31)
                float v = acc[a][b];
                if (mean) v = __fmul_rn(__fsub_rn(v, mean[p]), inv_std[p]);  // never contracted
                if (!vn || vn[p]) local = nan_max(local, finite_or_nan(v));
                if (write_map) map_n[p] = v;
            }
        }
    }
    red[tid] = local;
    __syncthreads();
    for (int s = NTHREADS / 2; s > 0; s >>= 1) {
        if (tid < s) red[tid] = nan_max(red[tid], red[tid + s]);
        __syncthreads();
    }
    if (tid == 0 && red[0] != neg_inf) atomicMax(&keys[n], ordered_key(red[0]));
}

extern "C" __global__ void decode_scores(const int* __restrict__ keys, float* __restrict__ scores, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) scores[i] = key_to_float(keys[i]);
}
