/*
 * rpcpay.wire._edwards: the one curve operation a client-id check needs, fast.
 *
 * Checking a Monero signature (c, r) on key P means computing comm = c*P + r*G and hashing it.
 * libsodium only offers a constant-time variable-base multiply that also re-checks that P is in
 * the prime-order subgroup on every call; monerod uses a variable-time double-scalar multiply.
 * Nothing here is secret (c, r and P all come from the client), so variable time is fine.
 *
 * Field: GF(2^255 - 19) in radix 2^51 (five 64-bit limbs, 128-bit products).
 * Curve: -x^2 + y^2 = 1 + d x^2 y^2, extended coordinates (X:Y:Z:T), x = X/Z, y = Y/Z, T = XY/Z.
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

static const uint64_t MASK51 = (((uint64_t)1) << 51) - 1;

static void fe_0(fe *h) { memset(h, 0, sizeof *h); }
static void fe_1(fe *h) { fe_0(h); h->v[0] = 1; }

static void fe_add(fe *h, const fe *f, const fe *g) {
    for (int i = 0; i < 5; i++) h->v[i] = f->v[i] + g->v[i];
}

/* h = f - g, adding 4p first so no limb goes negative (inputs are < 2^54 per limb). */
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

static void fe_mul(fe *h, const fe *f, const fe *g) {
    const uint64_t *a = f->v, *b = g->v;
    uint64_t b1_19 = b[1] * 19, b2_19 = b[2] * 19, b3_19 = b[3] * 19, b4_19 = b[4] * 19;
    u128 t0 = (u128)a[0] * b[0] + (u128)a[1] * b4_19 + (u128)a[2] * b3_19 + (u128)a[3] * b2_19 + (u128)a[4] * b1_19;
    u128 t1 = (u128)a[0] * b[1] + (u128)a[1] * b[0] + (u128)a[2] * b4_19 + (u128)a[3] * b3_19 + (u128)a[4] * b2_19;
    u128 t2 = (u128)a[0] * b[2] + (u128)a[1] * b[1] + (u128)a[2] * b[0] + (u128)a[3] * b4_19 + (u128)a[4] * b3_19;
    u128 t3 = (u128)a[0] * b[3] + (u128)a[1] * b[2] + (u128)a[2] * b[1] + (u128)a[3] * b[0] + (u128)a[4] * b4_19;
    u128 t4 = (u128)a[0] * b[4] + (u128)a[1] * b[3] + (u128)a[2] * b[2] + (u128)a[3] * b[1] + (u128)a[4] * b[0];
    uint64_t c;
    uint64_t r0 = (uint64_t)t0 & MASK51; c = (uint64_t)(t0 >> 51); t1 += c;
    uint64_t r1 = (uint64_t)t1 & MASK51; c = (uint64_t)(t1 >> 51); t2 += c;
    uint64_t r2 = (uint64_t)t2 & MASK51; c = (uint64_t)(t2 >> 51); t3 += c;
    uint64_t r3 = (uint64_t)t3 & MASK51; c = (uint64_t)(t3 >> 51); t4 += c;
    uint64_t r4 = (uint64_t)t4 & MASK51; c = (uint64_t)(t4 >> 51);
    r0 += c * 19; c = r0 >> 51; r0 &= MASK51; r1 += c;
    h->v[0] = r0; h->v[1] = r1; h->v[2] = r2; h->v[3] = r3; h->v[4] = r4;
}

static void fe_sq(fe *h, const fe *f) { fe_mul(h, f, f); }

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
static point BASE_TABLE[16]; /* k*G for k = 0..15 */

static void point_identity(point *p) {
    fe_0(&p->X); fe_1(&p->Y); fe_1(&p->Z); fe_0(&p->T);
}

/* add-2008-hwcd-3 (a = -1): complete for points of the curve. */
static void point_add(point *r, const point *p, const point *q) {
    fe a, b, c, d, e, f, g, h, t;
    fe_sub(&a, &p->Y, &p->X); fe_sub(&t, &q->Y, &q->X); fe_mul(&a, &a, &t);
    fe_add(&b, &p->Y, &p->X); fe_add(&t, &q->Y, &q->X); fe_mul(&b, &b, &t);
    fe_mul(&c, &p->T, &q->T); fe_mul(&c, &c, &D2);
    fe_mul(&d, &p->Z, &q->Z); fe_add(&d, &d, &d);
    fe_sub(&e, &b, &a); fe_sub(&f, &d, &c); fe_add(&g, &d, &c); fe_add(&h, &b, &a);
    fe_carry(&e); fe_carry(&f); fe_carry(&g); fe_carry(&h);
    fe_mul(&r->X, &e, &f); fe_mul(&r->Y, &g, &h); fe_mul(&r->T, &e, &h); fe_mul(&r->Z, &f, &g);
}

/* dbl-2008-hwcd (a = -1). */
static void point_double(point *r, const point *p) {
    fe a, b, c, e, g, f, h, t;
    fe_sq(&a, &p->X);
    fe_sq(&b, &p->Y);
    fe_sq(&c, &p->Z); fe_add(&c, &c, &c);
    fe_add(&t, &p->X, &p->Y); fe_carry(&t); fe_sq(&t, &t);
    fe_add(&h, &a, &b);            /* A + B */
    fe_sub(&e, &t, &h);            /* (X+Y)^2 - A - B */
    fe_sub(&g, &b, &a);            /* D + B with D = -A */
    fe_carry(&g);
    fe_sub(&f, &g, &c);            /* G - C */
    fe_neg(&h, &h);                /* D - B = -A - B */
    fe_carry(&e); fe_carry(&f); fe_carry(&h);
    fe_mul(&r->X, &e, &f); fe_mul(&r->Y, &g, &h); fe_mul(&r->T, &e, &h); fe_mul(&r->Z, &f, &g);
}

/* Decode a point as Monero's ge_frombytes_vartime does; 0 on success, -1 if not a point. */
static int point_decode(point *p, const unsigned char *s) {
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

static void point_encode(unsigned char *s, const point *p) {
    fe zi, x, y;
    fe_invert(&zi, &p->Z);
    fe_mul(&x, &p->X, &zi);
    fe_mul(&y, &p->Y, &zi);
    fe_tobytes(s, &y);
    s[31] ^= (unsigned char)(fe_isnegative(&x) << 7);
}

static void table16(point table[16], const point *p) {
    point_identity(&table[0]);
    table[1] = *p;
    for (int i = 2; i < 16; i++) point_add(&table[i], &table[i - 1], p);
}

/* a*P + b*G, scalars little-endian, 4-bit fixed windows from the top (variable time). */
static void double_scalarmult(point *r, const unsigned char *a, const point *p,
                              const unsigned char *b) {
    point table[16];
    table16(table, p);
    point_identity(r);
    for (int i = 63; i >= 0; i--) {
        point_double(r, r); point_double(r, r); point_double(r, r); point_double(r, r);
        int na = (a[i / 2] >> (4 * (i & 1))) & 15;
        int nb = (b[i / 2] >> (4 * (i & 1))) & 15;
        if (na) point_add(r, r, &table[na]);
        if (nb) point_add(r, r, &BASE_TABLE[nb]);
    }
}

static PyObject *double_scalarmult_base(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer a, p, b;
    if (!PyArg_ParseTuple(args, "y*y*y*", &a, &p, &b)) return NULL;
    PyObject *result = NULL;
    if (a.len != 32 || p.len != 32 || b.len != 32) {
        PyErr_SetString(PyExc_ValueError, "scalars and point must be 32 bytes");
        goto done;
    }
    point pt, out;
    unsigned char enc[32];
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = point_decode(&pt, (const unsigned char *)p.buf) == 0;
    if (ok) {
        double_scalarmult(&out, (const unsigned char *)a.buf, &pt, (const unsigned char *)b.buf);
        point_encode(enc, &out);
    }
    Py_END_ALLOW_THREADS
    if (!ok) { Py_INCREF(Py_None); result = Py_None; goto done; }
    result = PyBytes_FromStringAndSize((const char *)enc, 32);
done:
    PyBuffer_Release(&a); PyBuffer_Release(&p); PyBuffer_Release(&b);
    return result;
}

static PyMethodDef methods[] = {
    {"double_scalarmult_base", double_scalarmult_base, METH_VARARGS,
     "double_scalarmult_base(a, P, b) -> encoding of a*P + b*G, or None if P is not a point.\n"
     "Variable time; scalars are 32-byte little-endian and may be any 256-bit value."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_edwards",
    "Variable-time a*P + b*G on edwards25519, for checking public signatures.", -1, methods,
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
    point g;
    if (point_decode(&g, base_enc) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "base point does not decode");
        return NULL;
    }
    table16(BASE_TABLE, &g);
    return PyModule_Create(&module);
}
