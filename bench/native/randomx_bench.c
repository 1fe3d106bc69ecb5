/* Native baseline for bench/randomx_binding.py: the same work as the Python benchmark
 * (one VM per thread, 76-byte blobs with a 4-byte nonce at offset 39), straight from C.
 *
 * usage: randomx_bench light|fast THREADS
 * Sets up once, prints "ready", then for each number of seconds read from stdin hashes for
 * that long on every thread and prints one line: hashes=<n> seconds=<elapsed>.  Reading the
 * rounds from stdin lets the Python side interleave native and binding rounds, so a busy
 * machine slows both alike.
 */
#include <pthread.h>
#include <randomx.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BLOB_SIZE 76
#define NONCE_OFFSET 39

static const char KEY[] = "rpcpay bench key";

struct worker {
    pthread_t thread;
    int index;
    randomx_vm *vm;
    double deadline;
    unsigned long hashes;
    /* dataset init range (fast mode) */
    randomx_dataset *dataset;
    randomx_cache *cache;
    unsigned long start, count;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *init_range(void *arg) {
    struct worker *w = arg;
    randomx_init_dataset(w->dataset, w->cache, w->start, w->count);
    return NULL;
}

static void *hash_loop(void *arg) {
    struct worker *w = arg;
    unsigned char blob[BLOB_SIZE];
    unsigned char out[RANDOMX_HASH_SIZE];
    uint32_t nonce = 0;
    memset(blob, 0, sizeof blob);
    blob[0] = (unsigned char)w->index;
    while (now() < w->deadline) {
        memcpy(blob + NONCE_OFFSET, &nonce, sizeof nonce);
        randomx_calculate_hash(w->vm, blob, sizeof blob, out);
        nonce++;
        w->hashes++;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s light|fast THREADS\n", argv[0]);
        return 2;
    }
    int fast = strcmp(argv[1], "fast") == 0;
    int threads = atoi(argv[2]);
    if (threads < 1) {
        fprintf(stderr, "bad THREADS\n");
        return 2;
    }
    randomx_flags flags = randomx_get_flags();
    randomx_cache *cache = randomx_alloc_cache(flags);
    if (cache == NULL) {
        fprintf(stderr, "randomx_alloc_cache failed\n");
        return 1;
    }
    randomx_init_cache(cache, KEY, strlen(KEY));
    struct worker *ws = calloc((size_t)threads, sizeof *ws);
    randomx_dataset *dataset = NULL;
    if (fast) {
        dataset = randomx_alloc_dataset(RANDOMX_FLAG_DEFAULT);
        if (dataset == NULL) {
            fprintf(stderr, "randomx_alloc_dataset failed\n");
            return 1;
        }
        unsigned long total = randomx_dataset_item_count();
        unsigned long per = total / (unsigned long)threads;
        fprintf(stderr, "native: building dataset on %d threads...\n", threads);
        for (int i = 0; i < threads; i++) {
            ws[i].dataset = dataset;
            ws[i].cache = cache;
            ws[i].start = per * (unsigned long)i;
            ws[i].count = i == threads - 1 ? total - ws[i].start : per;
            pthread_create(&ws[i].thread, NULL, init_range, &ws[i]);
        }
        for (int i = 0; i < threads; i++)
            pthread_join(ws[i].thread, NULL);
        flags |= RANDOMX_FLAG_FULL_MEM;
    }
    for (int i = 0; i < threads; i++) {
        ws[i].index = i;
        ws[i].vm = randomx_create_vm(flags, fast ? NULL : cache, dataset);
        if (ws[i].vm == NULL) {
            fprintf(stderr, "randomx_create_vm failed\n");
            return 1;
        }
    }
    printf("ready\n");
    fflush(stdout);
    double seconds;
    while (scanf("%lf", &seconds) == 1 && seconds > 0) {
        double start = now();
        for (int i = 0; i < threads; i++) {
            ws[i].hashes = 0;
            ws[i].deadline = start + seconds;
            pthread_create(&ws[i].thread, NULL, hash_loop, &ws[i]);
        }
        unsigned long hashes = 0;
        for (int i = 0; i < threads; i++) {
            pthread_join(ws[i].thread, NULL);
            hashes += ws[i].hashes;
        }
        printf("hashes=%lu seconds=%.6f\n", hashes, now() - start);
        fflush(stdout);
    }
    for (int i = 0; i < threads; i++)
        randomx_destroy_vm(ws[i].vm);
    if (dataset != NULL)
        randomx_release_dataset(dataset);
    randomx_release_cache(cache);
    free(ws);
    return 0;
}
