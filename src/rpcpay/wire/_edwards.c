/*
 * rpcpay.wire._edwards: the C parts of checking a client id, fast.
 *
 * Checking a Monero signature (c, r) on key P means computing comm = c*P + r*G and hashing it.
 * libsodium only offers a constant-time variable-base multiply that also re-checks that P is in
 * the prime-order subgroup on every call; monerod uses a variable-time double-scalar multiply.
 * Nothing here is secret (c, r and P all come from the client), so variable time is fine.
 *
 * Field: GF(2^255 - 19) in radix 2^51 (five 64-bit limbs, 128-bit products), with a dedicated
 * squaring. Curve: -x^2 + y^2 = 1 + d x^2 y^2 (edwards25519), points in ref10's family of
 * representations (see "Point representations" below).
 * Multiply: signed sliding windows (wNAF) for both scalars in one chain of doublings: width 5
 * for P (odd multiples P..15P, built per call or once per key by prepare_point), width 8 for G
 * (odd multiples G..127G, affine, built once at import). Also here: Keccak-256 (Monero's
 * cn_fast_hash) and the whole signature check of a well-formed client id, so that a paid call
 * makes one C call for it.
 * Measured on the 2-core AMD EPYC (bench/client_id_verify.py, libsodium's crypto_sign_open
 * ~39-41 us in the same runs): double_scalarmult_base ~31 us (52 us for the 4-bit fixed windows
 * this replaced), ~27 us with a prepared key; the multiply proper is ~25 us, the encoding's
 * inversion ~2.4 us, decoding ~2.5 us; fe_mul ~11 ns, fe_sq ~8.5 ns.
 * Written for rpcpay from the curve's definition and the standard explicit formulas
 * (Hisil-Wong-Carter-Dawson 2008, "add-2008-hwcd-3" and "dbl-2008-hwcd").
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef unsigned __int128 u128;
typedef struct { uint64_t v[5]; } fe;
typedef struct { fe X, Y, Z, T; } point;

/* Limb bounds, the invariant every function below keeps: fe_mul and fe_sq accept limbs below
 * 2^54 (so the top carry times 19 still fits 64 bits) and return limbs below 2^51 + 2^13;
 * fe_carry returns the same; fe_sub(f, g) needs f below 2^53 and g below 2^53 - 76 and returns
 * limbs below 2^54; fe_add returns the sum of its inputs' limbs. */
static const uint64_t MASK51 = (((uint64_t)1) << 51) - 1;

static void fe_0(fe *h) { memset(h, 0, sizeof *h); }
static void fe_1(fe *h) { fe_0(h); h->v[0] = 1; }

static void fe_add(fe *h, const fe *f, const fe *g) {
    for (int i = 0; i < 5; i++) h->v[i] = f->v[i] + g->v[i];
}

/* h = f - g, adding 4p first so no limb goes negative (bounds above). */
static void fe_sub(fe *h, const fe *f, const fe *g) {
    h->v[0] = (f->v[0] + 0x1FFFFFFFFFFFB4ULL) - g->v[0];
    for (int i = 1; i < 5; i++) h->v[i] = (f->v[i] + 0x1FFFFFFFFFFFFCULL) - g->v[i];
}

static void fe_carry(fe *h) {
    uint64_t c;
    for (int i = 0; i < 4; i++) { c = h->v[i] >> 51; h->v[i] &= MASK51; h->v[i + 1] += c; }
    c = h->v[4] >> 51; h->v[4] &= MASK51; h->v[0] += c * 19;
    c = h->v[0] >> 51; h->v[0] &= MASK51; h->v[1] += c;
}

/* h = the five 128-bit column sums of a product, carried down to 51-bit limbs (the top
 * carry wraps around times 19, as 2^255 = 19 mod p). */
static inline void fe_carry_wide(fe *h, u128 t0, u128 t1, u128 t2, u128 t3, u128 t4) {
    uint64_t c;
    uint64_t r0 = (uint64_t)t0 & MASK51; c = (uint64_t)(t0 >> 51); t1 += c;
    uint64_t r1 = (uint64_t)t1 & MASK51; c = (uint64_t)(t1 >> 51); t2 += c;
    uint64_t r2 = (uint64_t)t2 & MASK51; c = (uint64_t)(t2 >> 51); t3 += c;
    uint64_t r3 = (uint64_t)t3 & MASK51; c = (uint64_t)(t3 >> 51); t4 += c;
    uint64_t r4 = (uint64_t)t4 & MASK51; c = (uint64_t)(t4 >> 51);
    r0 += c * 19; c = r0 >> 51; r0 &= MASK51; r1 += c;
    h->v[0] = r0; h->v[1] = r1; h->v[2] = r2; h->v[3] = r3; h->v[4] = r4;
}

static void fe_mul(fe *h, const fe *f, const fe *g) {
    const uint64_t *a = f->v, *b = g->v;
    uint64_t b1_19 = b[1] * 19, b2_19 = b[2] * 19, b3_19 = b[3] * 19, b4_19 = b[4] * 19;
    u128 t0 = (u128)a[0] * b[0] + (u128)a[1] * b4_19 + (u128)a[2] * b3_19 + (u128)a[3] * b2_19 + (u128)a[4] * b1_19;
    u128 t1 = (u128)a[0] * b[1] + (u128)a[1] * b[0] + (u128)a[2] * b4_19 + (u128)a[3] * b3_19 + (u128)a[4] * b2_19;
    u128 t2 = (u128)a[0] * b[2] + (u128)a[1] * b[1] + (u128)a[2] * b[0] + (u128)a[3] * b4_19 + (u128)a[4] * b3_19;
    u128 t3 = (u128)a[0] * b[3] + (u128)a[1] * b[2] + (u128)a[2] * b[1] + (u128)a[3] * b[0] + (u128)a[4] * b4_19;
    u128 t4 = (u128)a[0] * b[4] + (u128)a[1] * b[3] + (u128)a[2] * b[2] + (u128)a[3] * b[1] + (u128)a[4] * b[0];
    fe_carry_wide(h, t0, t1, t2, t3, t4);
}

/* h = f^2: the 15 distinct products of fe_mul's 25, doubled where they pair up. */
static void fe_sq(fe *h, const fe *f) {
    const uint64_t *a = f->v;
    uint64_t a0_2 = a[0] * 2, a1_2 = a[1] * 2, a2_2 = a[2] * 2, a3_2 = a[3] * 2;
    uint64_t a3_19 = a[3] * 19, a4_19 = a[4] * 19;
    u128 t0 = (u128)a[0] * a[0] + (u128)a1_2 * a4_19 + (u128)a2_2 * a3_19;
    u128 t1 = (u128)a0_2 * a[1] + (u128)a2_2 * a4_19 + (u128)a[3] * a3_19;
    u128 t2 = (u128)a0_2 * a[2] + (u128)a[1] * a[1] + (u128)a3_2 * a4_19;
    u128 t3 = (u128)a0_2 * a[3] + (u128)a1_2 * a[2] + (u128)a[4] * a4_19;
    u128 t4 = (u128)a0_2 * a[4] + (u128)a1_2 * a[3] + (u128)a[2] * a[2];
    fe_carry_wide(h, t0, t1, t2, t3, t4);
}

static void fe_sqn(fe *h, const fe *f, int n) {
    fe_sq(h, f);
    for (int i = 1; i < n; i++) fe_sq(h, h);
}

/* z^(2^250 - 1), the common chain of inversion and square root. */
static void fe_pow2_250_1(fe *out, fe *z11, const fe *z) {
    fe t0, t1, z2, z9, z2_5_0, z2_10_0, z2_20_0, z2_50_0, z2_100_0;
    fe_sq(&z2, z);                       /* 2 */
    fe_sqn(&t0, &z2, 2);                 /* 8 */
    fe_mul(&z9, &t0, z);                 /* 9 */
    fe_mul(z11, &z9, &z2);               /* 11 */
    fe_sq(&t0, z11);                     /* 22 */
    fe_mul(&z2_5_0, &t0, &z9);           /* 2^5 - 1 */
    fe_sqn(&t0, &z2_5_0, 5);
    fe_mul(&z2_10_0, &t0, &z2_5_0);      /* 2^10 - 1 */
    fe_sqn(&t0, &z2_10_0, 10);
    fe_mul(&z2_20_0, &t0, &z2_10_0);     /* 2^20 - 1 */
    fe_sqn(&t0, &z2_20_0, 20);
    fe_mul(&t1, &t0, &z2_20_0);          /* 2^40 - 1 */
    fe_sqn(&t0, &t1, 10);
    fe_mul(&z2_50_0, &t0, &z2_10_0);     /* 2^50 - 1 */
    fe_sqn(&t0, &z2_50_0, 50);
    fe_mul(&z2_100_0, &t0, &z2_50_0);    /* 2^100 - 1 */
    fe_sqn(&t0, &z2_100_0, 100);
    fe_mul(&t1, &t0, &z2_100_0);         /* 2^200 - 1 */
    fe_sqn(&t0, &t1, 50);
    fe_mul(out, &t0, &z2_50_0);          /* 2^250 - 1 */
}

/* z^(p - 2) = z^(2^255 - 21) */
static void fe_invert(fe *out, const fe *z) {
    fe t, z11;
    fe_pow2_250_1(&t, &z11, z);
    fe_sqn(&t, &t, 5);                   /* 2^255 - 2^5 */
    fe_mul(out, &t, &z11);               /* 2^255 - 21 */
}

/* z^((p - 5) / 8) = z^(2^252 - 3) */
static void fe_pow22523(fe *out, const fe *z) {
    fe t, z11;
    fe_pow2_250_1(&t, &z11, z);
    fe_sqn(&t, &t, 2);                   /* 2^252 - 4 */
    fe_mul(out, &t, z);                  /* 2^252 - 3 */
}

static void fe_frombytes(fe *h, const unsigned char *s) {
    uint64_t w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = 0;
        for (int j = 7; j >= 0; j--) w[i] = (w[i] << 8) | s[8 * i + j];
    }
    h->v[0] = w[0] & MASK51;
    h->v[1] = ((w[0] >> 51) | (w[1] << 13)) & MASK51;
    h->v[2] = ((w[1] >> 38) | (w[2] << 26)) & MASK51;
    h->v[3] = ((w[2] >> 25) | (w[3] << 39)) & MASK51;
    h->v[4] = (w[3] >> 12) & MASK51; /* drops bit 255 (the sign of x) */
}

/* Fully reduced little-endian encoding. */
static void fe_tobytes(unsigned char *s, const fe *f) {
    fe h = *f;
    fe_carry(&h);
    fe_carry(&h);
    /* now h < 2^255 + small; subtract p if h >= p */
    uint64_t q = (h.v[0] + 19) >> 51;
    q = (h.v[1] + q) >> 51;
    q = (h.v[2] + q) >> 51;
    q = (h.v[3] + q) >> 51;
    q = (h.v[4] + q) >> 51;
    h.v[0] += 19 * q;
    for (int i = 0; i < 4; i++) { h.v[i + 1] += h.v[i] >> 51; h.v[i] &= MASK51; }
    h.v[4] &= MASK51;
    uint64_t w[4];
    w[0] = h.v[0] | (h.v[1] << 51);
    w[1] = (h.v[1] >> 13) | (h.v[2] << 38);
    w[2] = (h.v[2] >> 26) | (h.v[3] << 25);
    w[3] = (h.v[3] >> 39) | (h.v[4] << 12);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++) s[8 * i + j] = (unsigned char)(w[i] >> (8 * j));
}

static int fe_isnegative(const fe *f) {
    unsigned char s[32];
    fe_tobytes(s, f);
    return s[0] & 1;
}

static int fe_iszero(const fe *f) {
    unsigned char s[32];
    fe_tobytes(s, f);
    unsigned char acc = 0;
    for (int i = 0; i < 32; i++) acc |= s[i];
    return acc == 0;
}

static void fe_neg(fe *h, const fe *f) {
    fe zero;
    fe_0(&zero);
    fe_sub(h, &zero, f);
}

static fe D, D2, SQRTM1;

/*
 * Point representations (all for a = -1, x = X/Z, y = Y/Z unless said otherwise):
 *   point_p2      (X:Y:Z), enough to double;
 *   point_p3      (X:Y:Z:T) with T = XY/Z, needed to add;
 *   point_p1p1    "completed" ((X:Z), (Y:T)), x = X/Z and y = Y/T: what a doubling or an
 *                 addition yields before its last multiplications, so the caller pays only for
 *                 the form it needs next (3 products to p2, 4 to p3);
 *   point_cached  (Y+X, Y-X, 2Z, 2dT) of a p3, the form a variable point is added in;
 *   point_affine  (y+x, y-x, 2dxy) with Z = 1, the form the base point's table is stored in.
 * Every fe stored in these has limbs below 2^54 (the bound fe_mul and fe_sq accept).
 */
typedef struct { fe X, Y, Z; } point_p2;
typedef struct { fe X, Y, Z, T; } point_p3;
typedef struct { fe X, Y, Z, T; } point_p1p1;
typedef struct { fe YplusX, YminusX, Z2, T2d; } point_cached;
typedef struct { fe yplusx, yminusx, xy2d; } point_affine;

/* wNAF widths: digits are odd and below 2^(w-1) in absolute value, so the tables hold the odd
 * multiples 1, 3, ..., 2^(w-1) - 1 of their point. */
#define VAR_WNAF_WIDTH 5
#define BASE_WNAF_WIDTH 8
#define VAR_TABLE_SIZE (1 << (VAR_WNAF_WIDTH - 2))   /* 8: P, 3P, ..., 15P */
#define BASE_TABLE_SIZE (1 << (BASE_WNAF_WIDTH - 2)) /* 64: G, 3G, ..., 127G */
#define WNAF_DIGITS 257 /* a 256-bit scalar's wNAF can carry into bit 256 */

static point_affine BASE_TABLE[BASE_TABLE_SIZE];

static void p1p1_to_p2(point_p2 *r, const point_p1p1 *p) {
    fe_mul(&r->X, &p->X, &p->T);
    fe_mul(&r->Y, &p->Y, &p->Z);
    fe_mul(&r->Z, &p->Z, &p->T);
}

static void p1p1_to_p3(point_p3 *r, const point_p1p1 *p) {
    fe_mul(&r->X, &p->X, &p->T);
    fe_mul(&r->Y, &p->Y, &p->Z);
    fe_mul(&r->Z, &p->Z, &p->T);
    fe_mul(&r->T, &p->X, &p->Y);
}

static void p3_to_cached(point_cached *r, const point_p3 *p) {
    fe_add(&r->YplusX, &p->Y, &p->X); fe_carry(&r->YplusX);
    fe_sub(&r->YminusX, &p->Y, &p->X); fe_carry(&r->YminusX);
    fe_add(&r->Z2, &p->Z, &p->Z); fe_carry(&r->Z2);
    fe_mul(&r->T2d, &p->T, &D2);
}

/* dbl-2008-hwcd with a = -1, stopped before its final products. With A = X^2, B = Y^2,
 * C = 2Z^2, E = (X+Y)^2 - A - B, G = B - A, the double is x = E/G, y = (A+B)/(C-G). */
static void p2_dbl(point_p1p1 *r, const point_p2 *p) {
    fe a, b, c, e;
    fe_sq(&a, &p->X);
    fe_sq(&b, &p->Y);
    fe_sq(&c, &p->Z); fe_add(&c, &c, &c);
    fe_add(&e, &p->X, &p->Y); fe_sq(&e, &e);
    fe_add(&r->Y, &b, &a);
    fe_sub(&r->Z, &b, &a); fe_carry(&r->Z); /* subtracted below: keep it below 2^53 */
    fe_sub(&r->X, &e, &r->Y);
    fe_sub(&r->T, &c, &r->Z);
}

/* add-2008-hwcd-3 with a = -1 and k = 2d (complete on the whole curve), stopped before its final
 * products: x = E/G, y = H/F. Subtracting q swaps its Y+X and Y-X and negates its T, which
 * swaps the roles of D + C and D - C. z2 is q's 2Z, or NULL when q is affine (Z = 1). */
static void add_to_p1p1(point_p1p1 *r, const point_p3 *p, const fe *q_yplusx,
                        const fe *q_yminusx, const fe *q_t2d, const fe *q_z2, int subtract) {
    fe ypx, ymx, a, b, c, d;
    fe_add(&ypx, &p->Y, &p->X);
    fe_sub(&ymx, &p->Y, &p->X);
    fe_mul(&a, &ymx, subtract ? q_yplusx : q_yminusx);
    fe_mul(&b, &ypx, subtract ? q_yminusx : q_yplusx);
    fe_mul(&c, &p->T, q_t2d);
    if (q_z2) fe_mul(&d, &p->Z, q_z2);
    else fe_add(&d, &p->Z, &p->Z);
    fe_sub(&r->X, &b, &a);              /* E = B - A */
    fe_add(&r->Y, &b, &a);              /* H = B + A */
    if (subtract) {
        fe_sub(&r->Z, &d, &c);          /* G */
        fe_add(&r->T, &d, &c);          /* F */
    } else {
        fe_add(&r->Z, &d, &c);
        fe_sub(&r->T, &d, &c);
    }
}

static void add_cached(point_p1p1 *r, const point_p3 *p, const point_cached *q, int subtract) {
    add_to_p1p1(r, p, &q->YplusX, &q->YminusX, &q->T2d, &q->Z2, subtract);
}

static void add_affine(point_p1p1 *r, const point_p3 *p, const point_affine *q, int subtract) {
    add_to_p1p1(r, p, &q->yplusx, &q->yminusx, &q->xy2d, NULL, subtract);
}

/* Decode a point as Monero's ge_frombytes_vartime does; 0 on success, -1 if not a point. */
static int point_decode(point_p3 *p, const unsigned char *s) {
    fe u, v, v3, vxx, check, y;
    fe_frombytes(&y, s);
    /* y must be canonical (< p) */
    unsigned char back[32];
    fe_tobytes(back, &y);
    unsigned char top = s[31] & 0x7f;
    if (memcmp(back, s, 31) != 0 || back[31] != top) return -1;
    fe_1(&p->Z);
    p->Y = y;
    fe_sq(&u, &y);
    fe_mul(&v, &u, &D);
    fe_sub(&u, &u, &p->Z);          /* u = y^2 - 1 */
    fe_add(&v, &v, &p->Z);          /* v = d y^2 + 1 */
    fe_carry(&u); fe_carry(&v);
    fe_sq(&v3, &v); fe_mul(&v3, &v3, &v);           /* v^3 */
    fe_sq(&p->X, &v3); fe_mul(&p->X, &p->X, &v); fe_mul(&p->X, &p->X, &u); /* u v^7 */
    fe_pow22523(&p->X, &p->X);
    fe_mul(&p->X, &p->X, &v3); fe_mul(&p->X, &p->X, &u);                  /* u v^3 (u v^7)^((p-5)/8) */
    fe_sq(&vxx, &p->X); fe_mul(&vxx, &vxx, &v);
    fe_sub(&check, &vxx, &u);
    if (!fe_iszero(&check)) {
        fe_add(&check, &vxx, &u);
        if (!fe_iszero(&check)) return -1;
        fe_mul(&p->X, &p->X, &SQRTM1);
    }
    if (fe_isnegative(&p->X) != (s[31] >> 7)) {
        if (fe_iszero(&p->X)) return -1;
        fe_neg(&p->X, &p->X);
        fe_carry(&p->X);
    }
    fe_mul(&p->T, &p->X, &p->Y);
    return 0;
}

static void point_encode(unsigned char *s, const point_p2 *p) {
    fe zi, x, y;
    fe_invert(&zi, &p->Z);
    fe_mul(&x, &p->X, &zi);
    fe_mul(&y, &p->Y, &zi);
    fe_tobytes(s, &y);
    s[31] ^= (unsigned char)(fe_isnegative(&x) << 7);
}

/* Width-w non-adjacent form of the 256-bit little-endian s: sum(naf[i] * 2^i) == s, every
 * non-zero digit odd with |digit| < 2^(w-1), and any w consecutive digits hold at most one
 * non-zero digit. The window is read at each odd position; a window of 2^(w-1) or more becomes
 * a negative digit and carries 1 into the next window. */
static void wnaf(signed char naf[WNAF_DIGITS], const unsigned char s[32], int w) {
    uint64_t x[6] = {0}; /* two zero words past the scalar: windows read beyond bit 255 */
    for (int i = 0; i < 32; i++) x[i / 8] |= (uint64_t)s[i] << (8 * (i % 8));
    const uint64_t width = (uint64_t)1 << w, mask = width - 1;
    memset(naf, 0, WNAF_DIGITS);
    uint64_t carry = 0;
    int pos = 0;
    while (pos < WNAF_DIGITS) {
        int word = pos / 64, bit = pos % 64;
        uint64_t bits = x[word] >> bit;
        if (bit + w > 64) bits |= x[word + 1] << (64 - bit);
        uint64_t window = carry + (bits & mask);
        if ((window & 1) == 0) { pos++; continue; }
        if (window < width / 2) {
            carry = 0;
            naf[pos] = (signed char)window;
        } else {
            /* Within w bits of the top, the window is below 2^(w-1) (the scalar has 256 bits),
             * so no carry is ever left past the last digit. */
            carry = 1;
            naf[pos] = (signed char)((int)window - (int)width);
        }
        pos += w;
    }
}

/* The odd multiples P, 3P, ..., 15P in cached form. */
static void var_table(point_cached table[VAR_TABLE_SIZE], const point_p3 *p) {
    point_p2 p2 = {p->X, p->Y, p->Z};
    point_p1p1 t;
    point_p3 twice, odd;
    p2_dbl(&t, &p2);
    p1p1_to_p3(&twice, &t);
    p3_to_cached(&table[0], p);
    for (int i = 1; i < VAR_TABLE_SIZE; i++) {
        add_cached(&t, &twice, &table[i - 1], 0);
        p1p1_to_p3(&odd, &t);
        p3_to_cached(&table[i], &odd);
    }
}

/* a*P + b*G for 256-bit little-endian scalars (variable time), P given by its odd multiples
 * (var_table): one shared chain of doublings from the top non-zero wNAF digit, adding or
 * subtracting table entries at non-zero digits. */
static void double_scalarmult(point_p2 *r, const unsigned char *a,
                              const point_cached p_odd[VAR_TABLE_SIZE], const unsigned char *b) {
    signed char a_naf[WNAF_DIGITS], b_naf[WNAF_DIGITS];
    wnaf(a_naf, a, VAR_WNAF_WIDTH);
    wnaf(b_naf, b, BASE_WNAF_WIDTH);
    fe_0(&r->X); fe_1(&r->Y); fe_1(&r->Z);
    int i = WNAF_DIGITS - 1;
    while (i >= 0 && a_naf[i] == 0 && b_naf[i] == 0) i--;
    for (; i >= 0; i--) {
        point_p1p1 t;
        point_p3 u;
        p2_dbl(&t, r);
        if (a_naf[i] > 0) {
            p1p1_to_p3(&u, &t); add_cached(&t, &u, &p_odd[a_naf[i] / 2], 0);
        } else if (a_naf[i] < 0) {
            p1p1_to_p3(&u, &t); add_cached(&t, &u, &p_odd[-a_naf[i] / 2], 1);
        }
        if (b_naf[i] > 0) {
            p1p1_to_p3(&u, &t); add_affine(&t, &u, &BASE_TABLE[b_naf[i] / 2], 0);
        } else if (b_naf[i] < 0) {
            p1p1_to_p3(&u, &t); add_affine(&t, &u, &BASE_TABLE[-b_naf[i] / 2], 1);
        }
        p1p1_to_p2(r, &t);
    }
}

/* The odd multiples G, 3G, ..., 127G in affine form, once at import (64 inversions, ~1 ms). */
static void base_table(const point_p3 *g) {
    point_p2 g2 = {g->X, g->Y, g->Z};
    point_p1p1 t;
    point_p3 twice, odd = *g;
    point_cached twice_cached;
    p2_dbl(&t, &g2);
    p1p1_to_p3(&twice, &t);
    p3_to_cached(&twice_cached, &twice);
    for (int i = 0; i < BASE_TABLE_SIZE; i++) {
        fe zi, x, y;
        point_affine *e = &BASE_TABLE[i];
        fe_invert(&zi, &odd.Z);
        fe_mul(&x, &odd.X, &zi);
        fe_mul(&y, &odd.Y, &zi);
        fe_add(&e->yplusx, &y, &x); fe_carry(&e->yplusx);
        fe_sub(&e->yminusx, &y, &x); fe_carry(&e->yminusx);
        fe_mul(&e->xy2d, &x, &y); fe_mul(&e->xy2d, &e->xy2d, &D2);
        add_cached(&t, &odd, &twice_cached, 0);
        p1p1_to_p3(&odd, &t);
    }
}

/*
 * Keccak-256 as Monero's cn_fast_hash: the original Keccak submission's padding (0x01 ... 0x80),
 * rate 136 bytes, written from the Keccak reference (theta, rho, pi, chi, iota on 25 lanes). The
 * round constants and rotation offsets are derived at import from their definitions (the LFSR
 * x^8 + x^6 + x^5 + x^4 + 1 and the triangular numbers along the (x, y) -> (y, 2x + 3y) walk).
 * About 0.3 us for a short input, against ~4 us for pycryptodome's keccak.new per call, which a
 * client-id check pays twice.
 */
#define KECCAK_RATE 136
static uint64_t KECCAK_RC[24];
static unsigned KECCAK_ROT[25];  /* rotation of lane x + 5y */
static unsigned KECCAK_PI[25];   /* lane x + 5y moves to lane y + 5 * ((2x + 3y) % 5) */

static uint64_t rotl64(uint64_t v, unsigned n) { return n ? (v << n) | (v >> (64 - n)) : v; }

static void keccak_init_tables(void) {
    unsigned lfsr = 1;
    for (int round = 0; round < 24; round++) {
        KECCAK_RC[round] = 0;
        for (int j = 0; j < 7; j++) {
            if (lfsr & 1) KECCAK_RC[round] |= (uint64_t)1 << ((1u << j) - 1);
            lfsr = ((lfsr << 1) ^ ((lfsr & 0x80) ? 0x71 : 0)) & 0xff;
        }
    }
    unsigned x = 1, y = 0;
    KECCAK_ROT[0] = 0;
    for (unsigned t = 0; t < 24; t++) {
        KECCAK_ROT[x + 5 * y] = ((t + 1) * (t + 2) / 2) % 64;
        unsigned nx = y, ny = (2 * x + 3 * y) % 5;
        x = nx; y = ny;
    }
    for (x = 0; x < 5; x++)
        for (y = 0; y < 5; y++) KECCAK_PI[x + 5 * y] = y + 5 * ((2 * x + 3 * y) % 5);
}

static void keccak_f1600(uint64_t a[25]) {
    uint64_t b[25], c[5], d;
    for (int round = 0; round < 24; round++) {
        for (int x = 0; x < 5; x++) c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
        for (int x = 0; x < 5; x++) {
            d = c[(x + 4) % 5] ^ rotl64(c[(x + 1) % 5], 1);
            for (int y = 0; y < 25; y += 5) a[x + y] ^= d;
        }
        for (int i = 0; i < 25; i++) b[KECCAK_PI[i]] = rotl64(a[i], KECCAK_ROT[i]);
        for (int y = 0; y < 25; y += 5)
            for (int x = 0; x < 5; x++)
                a[x + y] = b[x + y] ^ (~b[(x + 1) % 5 + y] & b[(x + 2) % 5 + y]);
        a[0] ^= KECCAK_RC[round];
    }
}

static void keccak_absorb_block(uint64_t a[25], const unsigned char *block) {
    for (int i = 0; i < KECCAK_RATE / 8; i++) {
        uint64_t lane = 0;
        for (int j = 7; j >= 0; j--) lane = (lane << 8) | block[8 * i + j];
        a[i] ^= lane;
    }
    keccak_f1600(a);
}

static void keccak256(unsigned char out[32], const unsigned char *data, size_t len) {
    uint64_t a[25] = {0};
    for (; len >= KECCAK_RATE; data += KECCAK_RATE, len -= KECCAK_RATE)
        keccak_absorb_block(a, data);
    unsigned char last[KECCAK_RATE] = {0};
    memcpy(last, data, len);
    last[len] ^= 0x01;
    last[KECCAK_RATE - 1] ^= 0x80;
    keccak_absorb_block(a, last);
    for (int i = 0; i < 32; i++) out[i] = (unsigned char)(a[i / 8] >> (8 * (i % 8)));
}

static PyObject *py_keccak256(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) != 0) return NULL;
    unsigned char out[32];
    /* long inputs (block blobs) let other threads run, as pycryptodome's ctypes call did */
    if (data.len >= 4096) {
        Py_BEGIN_ALLOW_THREADS
        keccak256(out, (const unsigned char *)data.buf, (size_t)data.len);
        Py_END_ALLOW_THREADS
    } else {
        keccak256(out, (const unsigned char *)data.buf, (size_t)data.len);
    }
    PyBuffer_Release(&data);
    return PyBytes_FromStringAndSize((const char *)out, 32);
}

/* A decoded key (its encoding and odd multiples), as prepare_point hands it to Python. */
typedef struct { unsigned char encoding[32]; point_cached odd[VAR_TABLE_SIZE]; } prepared_point;

static PyObject *double_scalarmult_base(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer a, p, b;
    if (!PyArg_ParseTuple(args, "y*y*y*", &a, &p, &b)) return NULL;
    PyObject *result = NULL;
    if (a.len != 32 || p.len != 32 || b.len != 32) {
        PyErr_SetString(PyExc_ValueError, "scalars and point must be 32 bytes");
        goto done;
    }
    point_p3 pt;
    point_cached p_odd[VAR_TABLE_SIZE];
    point_p2 out;
    unsigned char enc[32];
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = point_decode(&pt, (const unsigned char *)p.buf) == 0;
    if (ok) {
        var_table(p_odd, &pt);
        double_scalarmult(&out, (const unsigned char *)a.buf, p_odd, (const unsigned char *)b.buf);
        point_encode(enc, &out);
    }
    Py_END_ALLOW_THREADS
    result = ok ? PyBytes_FromStringAndSize((const char *)enc, 32) : Py_NewRef(Py_None);
done:
    PyBuffer_Release(&a); PyBuffer_Release(&p); PyBuffer_Release(&b);
    return result;
}

static PyObject *prepare_point(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer p;
    if (PyObject_GetBuffer(arg, &p, PyBUF_SIMPLE) != 0) return NULL;
    PyObject *result = NULL;
    if (p.len != 32) {
        PyErr_SetString(PyExc_ValueError, "a point must be 32 bytes");
        goto done;
    }
    point_p3 pt;
    prepared_point prepared;
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = point_decode(&pt, (const unsigned char *)p.buf) == 0;
    if (ok) {
        memcpy(prepared.encoding, p.buf, 32);
        var_table(prepared.odd, &pt);
    }
    Py_END_ALLOW_THREADS
    result = ok ? PyBytes_FromStringAndSize((const char *)&prepared, sizeof prepared)
                : Py_NewRef(Py_None);
done:
    PyBuffer_Release(&p);
    return result;
}

static PyObject *double_scalarmult_prepared(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer a, p, b;
    if (!PyArg_ParseTuple(args, "y*y*y*", &a, &p, &b)) return NULL;
    PyObject *result = NULL;
    if (a.len != 32 || b.len != 32 || p.len != (Py_ssize_t)sizeof(prepared_point)) {
        PyErr_SetString(PyExc_ValueError, "scalars must be 32 bytes, P from prepare_point");
        goto done;
    }
    prepared_point prepared;
    point_p2 out;
    unsigned char enc[32];
    memcpy(&prepared, p.buf, sizeof prepared); /* the buffer need not be aligned */
    Py_BEGIN_ALLOW_THREADS
    double_scalarmult(&out, (const unsigned char *)a.buf, prepared.odd,
                      (const unsigned char *)b.buf);
    point_encode(enc, &out);
    Py_END_ALLOW_THREADS
    result = PyBytes_FromStringAndSize((const char *)enc, 32);
done:
    PyBuffer_Release(&a); PyBuffer_Release(&p); PyBuffer_Release(&b);
    return result;
}

/* Scalars mod L = 2^252 + 27742317777372353535851937790883648493, as four 64-bit words. */
static const uint64_t L_WORDS[4] = {
    0x5812631a5cf5d3edULL, 0x14def9dea2f79cd6ULL, 0, 0x1000000000000000ULL};

static void scalar_load(uint64_t w[4], const unsigned char s[32]) {
    for (int i = 0; i < 4; i++) {
        w[i] = 0;
        for (int j = 7; j >= 0; j--) w[i] = (w[i] << 8) | s[8 * i + j];
    }
}

static int scalar_below_l(const uint64_t w[4]) {
    for (int i = 3; i >= 0; i--)
        if (w[i] != L_WORDS[i]) return w[i] < L_WORDS[i];
    return 0;
}

/* w mod L by repeated subtraction: a 256-bit value is below 16 L, so at most 15 rounds. */
static void scalar_reduce(uint64_t w[4]) {
    while (!scalar_below_l(w)) {
        uint64_t borrow = 0;
        for (int i = 0; i < 4; i++) {
            uint64_t d = w[i] - L_WORDS[i] - borrow;
            borrow = (w[i] < L_WORDS[i]) || (w[i] == L_WORDS[i] && borrow);
            w[i] = d;
        }
    }
}

/* epee's hex_to_pod: upper- and lower-case digits and nothing else; 0 on success. */
static int hex_decode(unsigned char *out, const unsigned char *hex, size_t out_len) {
    for (size_t i = 0; i < 2 * out_len; i++) {
        unsigned char ch = hex[i];
        int v;
        if (ch >= '0' && ch <= '9') v = ch - '0';
        else if (ch >= 'a' && ch <= 'f') v = ch - 'a' + 10;
        else if (ch >= 'A' && ch <= 'F') v = ch - 'A' + 10;
        else return -1;
        if (i % 2 == 0) out[i / 2] = (unsigned char)(v << 4);
        else out[i / 2] |= (unsigned char)v;
    }
    return 0;
}

/* The signature part of a 208-byte client id (key hex, 16 timestamp bytes, signature hex), for
 * a key already checked and prepared: monerod's check_signature(cn_fast_hash(ts), key, sig),
 * in the same steps as rpcpay.wire.ed25519.check_signature, which stays the reference. */
static int client_signature_ok(const unsigned char id[208], const prepared_point *key) {
    unsigned char sig[64], prefix_hash[32], hashed[96], comm[32];
    uint64_t c[4], r[4], h[4];
    point_p2 out;
    /* the signature must be 128 hex digits */
    if (hex_decode(sig, id + 80, 64) != 0) return 0;
    scalar_load(c, sig);
    scalar_load(r, sig + 32);
    /* both scalars must be canonical (below L), as monerod's sc_check requires */
    if (!scalar_below_l(c) || !scalar_below_l(r)) return 0;
    /* c = 0 would make the public key irrelevant, so monerod refuses it */
    if ((c[0] | c[1] | c[2] | c[3]) == 0) return 0;
    double_scalarmult(&out, sig, key->odd, sig + 32);
    point_encode(comm, &out);
    /* an identity commitment is refused by monerod (it would make c free to choose) */
    static const unsigned char identity[32] = {1};
    if (memcmp(comm, identity, 32) == 0) return 0;
    /* c must equal Hs(cn_fast_hash(timestamp text) || key || commitment) */
    keccak256(prefix_hash, id + 64, 16);
    memcpy(hashed, prefix_hash, 32);
    memcpy(hashed + 32, key->encoding, 32);
    memcpy(hashed + 64, comm, 32);
    unsigned char digest[32];
    keccak256(digest, hashed, 96);
    scalar_load(h, digest);
    scalar_reduce(h);
    return memcmp(h, c, sizeof h) == 0;
}

static PyObject *check_client_signature(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer id, p;
    if (!PyArg_ParseTuple(args, "y*y*", &id, &p)) return NULL;
    PyObject *result = NULL;
    if (id.len != 208 || p.len != (Py_ssize_t)sizeof(prepared_point)) {
        PyErr_SetString(PyExc_ValueError, "a client id is 208 bytes, the key from prepare_point");
        goto done;
    }
    prepared_point key;
    memcpy(&key, p.buf, sizeof key); /* the buffer need not be aligned */
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = client_signature_ok((const unsigned char *)id.buf, &key);
    Py_END_ALLOW_THREADS
    result = PyBool_FromLong(ok);
done:
    PyBuffer_Release(&id); PyBuffer_Release(&p);
    return result;
}

static PyMethodDef methods[] = {
    {"keccak256", py_keccak256, METH_O,
     "keccak256(data) -> the 32-byte Keccak-256 digest (original padding, Monero's cn_fast_hash)."},
    {"double_scalarmult_base", double_scalarmult_base, METH_VARARGS,
     "double_scalarmult_base(a, P, b) -> encoding of a*P + b*G, or None if P is not a point.\n"
     "Variable time; scalars are 32-byte little-endian and may be any 256-bit value."},
    {"prepare_point", prepare_point, METH_O,
     "prepare_point(P) -> opaque bytes for double_scalarmult_prepared, or None if P is not a\n"
     "point (the decode and the table of odd multiples, done once per key)."},
    {"double_scalarmult_prepared", double_scalarmult_prepared, METH_VARARGS,
     "double_scalarmult_prepared(a, prepared, b) -> encoding of a*P + b*G, P from prepare_point.\n"
     "Bytes of the right length that prepare_point did not make give a meaningless point."},
    {"check_client_signature", check_client_signature, METH_VARARGS,
     "check_client_signature(client_id, prepared) -> whether the 208-byte id's signature (its\n"
     "last 128 hex digits) verifies over its timestamp bytes with the key from prepare_point."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_edwards",
    "Variable-time a*P + b*G on edwards25519 and Keccak-256, for checking client ids.", -1,
    methods, NULL, NULL, NULL, NULL,
};

static void fe_from_hex_le(fe *h, const char *hex) {
    unsigned char s[32];
    for (int i = 0; i < 32; i++) {
        unsigned int byte;
        sscanf(hex + 2 * i, "%2x", &byte);
        s[i] = (unsigned char)byte;
    }
    fe_frombytes(h, s);
}

PyMODINIT_FUNC PyInit__edwards(void) {
    /* d = -121665/121666, sqrt(-1), and the base point, as little-endian encodings. */
    fe_from_hex_le(&D, "a3785913ca4deb75abd841414d0a700098e879777940c78c73fe6f2bee6c0352");
    fe_add(&D2, &D, &D);
    fe_carry(&D2);
    fe_from_hex_le(&SQRTM1, "b0a00e4a271beec478e42fad0618432fa7d7fb3d99004d2b0bdfc14f8024832b");
    static const unsigned char base_enc[32] = {
        0x58, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
        0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66};
    point_p3 g;
    if (point_decode(&g, base_enc) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "base point does not decode");
        return NULL;
    }
    base_table(&g);
    keccak_init_tables();
    return PyModule_Create(&module);
}
