#include "dist/comm.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/progress.h"
#include "dist/comm_nccl.h"

#ifdef DLLM_MPI
#include <mpi.h>
#endif

// Set by mpirun (Open MPI), and by srun or other launchers through PMI / PMIx.
static int launched(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

void comm_shard(size_t n, int size, int r, size_t *lo, size_t *len) {
    size_t chunks = (n + SUM_SQUARES_CHUNK - 1) / SUM_SQUARES_CHUNK;
    size_t base = chunks / (size_t)size, extra = chunks % (size_t)size, i = (size_t)r;
    size_t first = i * base + (i < extra ? i : extra), count = base + (i < extra);
    *lo = first * SUM_SQUARES_CHUNK < n ? first * SUM_SQUARES_CHUNK : n;
    size_t end = (first + count) * SUM_SQUARES_CHUNK < n ? (first + count) * SUM_SQUARES_CHUNK : n;
    *len = end - *lo;
}

#ifndef DLLM_MPI
// The job size a launcher announced (1 when it says nothing), for a build that cannot join it.
static int announced_size(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 1) return atoi(v);
    }
    return 1;
}
#else
// Waits for a non-blocking exchange, at most c->timeout seconds. Polls: a blocking MPI call
// would wait for ever on a rank that hangs.
static int wait_for(Comm *c, MPI_Request *req, const char *what, Error *err) {
    double t0 = now_seconds();
    for (long polls = 0;; polls++) {
        int done = 0;
        MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (done) return 0;
        if (now_seconds() - t0 > c->timeout)
            return error_set(err, "rank %d of %d: no answer from the other ranks for %.0f s "
                                  "while %s (a rank died or hangs; --comm-timeout sets the wait)",
                             c->rank, c->size, c->timeout, what);
        if (polls > 1000) nanosleep(&(struct timespec){0, 200000}, NULL);
    }
}

// Every rank's shard of n values as MPI's counts and displacements: [0, size) and [size,
// 2 size) of a new array of (2 + extra) * size ints (the extra ones for the caller), or NULL
// with err; freed once the exchange has completed (MPI reads them until then). MPI counts are
// ints: a shard layout past INT_MAX values is refused.
static int *shard_counts(const Comm *c, size_t n, int extra, Error *err) {
    if (n > INT_MAX) {
        error_set(err, "%zu values exceed MPI's int counts (at most %d per exchange)", n,
                  INT_MAX);
        return NULL;
    }
    int *counts = malloc((2 + (size_t)extra) * (size_t)c->size * sizeof(int));
    if (!counts) {
        error_set(err, "out of memory for %d ranks' counts", c->size);
        return NULL;
    }
    for (int r = 0; r < c->size; r++) {
        size_t lo, len;
        comm_shard(n, c->size, r, &lo, &len);
        counts[r] = (int)len;
        counts[c->size + r] = (int)lo;
    }
    return counts;
}
#endif

int comm_open(Comm *c, double timeout, Error *err) {
    memset(c, 0, sizeof *c);
    c->size = 1;
    c->timeout = timeout;
    if (!launched()) return 0;
#ifdef DLLM_MPI
    int provided;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    c->mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &c->local_rank);
    MPI_Comm_free(&node);
    (void)err;
    return 0;
#else
    if (announced_size() > 1)
        return error_set(err, "started as one of %d processes, but this dllm was built without "
                              "MPI (install libopenmpi-dev and rebuild)", announced_size());
    return 0;
#endif
}

int comm_use_backend(Comm *c, const Backend *be, Error *err) {
    c->be = be;
    if (c->size == 1 || strcmp(be->name, "cpu") == 0) return 0;
    return comm_nccl_open(c, err);
}

void comm_close(Comm *c) {
    comm_nccl_close(c);
#ifdef DLLM_MPI
    if (c->mpi) MPI_Finalize();
#endif
    memset(c, 0, sizeof *c);
}

void comm_abort(const Comm *c, int code) {
#ifdef DLLM_MPI
    if (c->mpi && c->size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    (void)c;
    exit(code);
}

int comm_exchange_shards(Comm *c, const float *send, float *recv, size_t n, Error *err) {
    size_t lo, len;
    comm_shard(n, c->size, c->rank, &lo, &len);
    if (c->size == 1) {
        c->be->copy_rows(recv, 0, send, 0, n * sizeof(float), 1);
        return 0;
    }
    if (c->nccl) return comm_nccl_exchange_shards(c, send, recv, n, err);
#ifdef DLLM_MPI
    int *counts = shard_counts(c, n, 2, err);
    if (!counts) return -1;
    int *displs = counts + c->size, *rcounts = displs + c->size, *rdispls = rcounts + c->size;
    for (int r = 0; r < c->size; r++) {
        rcounts[r] = (int)len;
        rdispls[r] = (int)(len * (size_t)r);
    }
    MPI_Request req;
    MPI_Ialltoallv(send, counts, displs, MPI_FLOAT, recv, rcounts, rdispls, MPI_FLOAT,
                   MPI_COMM_WORLD, &req);
    int rc = wait_for(c, &req, "summing the gradients", err);
    free(counts);
    return rc;
#else
    return error_set(err, "a job of %d ranks without MPI", c->size);
#endif
}

int comm_gather_shards(Comm *c, float *buf, size_t n, Error *err) {
    if (c->size == 1) return 0;
    if (c->nccl) return comm_nccl_gather_shards(c, buf, n, err);
#ifdef DLLM_MPI
    int *counts = shard_counts(c, n, 0, err);
    if (!counts) return -1;
    MPI_Request req;
    MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, buf, counts, counts + c->size, MPI_FLOAT,
                    MPI_COMM_WORLD, &req);
    int rc = wait_for(c, &req, "gathering the updated weights", err);
    free(counts);
    return rc;
#else
    return error_set(err, "a job of %d ranks without MPI", c->size);
#endif
}

int comm_gather_to_root(Comm *c, const float *mine, float *all, size_t n, Error *err) {
    size_t lo, len;
    comm_shard(n, c->size, c->rank, &lo, &len);
    if (c->size == 1) {
        c->be->copy_rows(all, 0, mine, 0, n * sizeof(float), 1);
        return 0;
    }
    if (c->nccl) return comm_nccl_gather_to_root(c, mine, all, n, err);
#ifdef DLLM_MPI
    int *counts = shard_counts(c, n, 0, err);
    if (!counts) return -1;
    MPI_Request req;
    MPI_Igatherv(mine, (int)len, MPI_FLOAT, all, counts, counts + c->size, MPI_FLOAT, 0,
                 MPI_COMM_WORLD, &req);
    int rc = wait_for(c, &req, "gathering the optimizer state to save it", err);
    free(counts);
    return rc;
#else
    (void)mine, (void)all;
    return error_set(err, "a job of %d ranks without MPI", c->size);
#endif
}

int comm_gather_host(Comm *c, const void *mine, void *all, size_t bytes, Error *err) {
    if (c->size == 1) {
        memcpy(all, mine, bytes);
        return 0;
    }
#ifdef DLLM_MPI
    if (bytes > INT_MAX) return error_set(err, "%zu bytes exceed MPI's int counts", bytes);
    MPI_Request req;
    MPI_Iallgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD, &req);
    return wait_for(c, &req, "exchanging the step's losses", err);
#else
    (void)mine, (void)all;
    return error_set(err, "a job of %d ranks without MPI", c->size);
#endif
}
