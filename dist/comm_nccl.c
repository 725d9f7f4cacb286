#include "dist/comm_nccl.h"

#include <time.h>

#include "common/progress.h"

#if defined(DLLM_NCCL) && defined(DLLM_MPI)
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

int comm_nccl_open(Comm *c, Error *err) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices < 1)
        return error_set(err, "rank %d: no CUDA device", c->rank);
    // the processes of a machine take its devices in turn (CUDA_VISIBLE_DEVICES narrows them)
    if (cudaSetDevice(c->local_rank % devices) != cudaSuccess)
        return error_set(err, "rank %d: cannot use CUDA device %d", c->rank,
                         c->local_rank % devices);
    ncclUniqueId id;
    if (c->rank == 0 && ncclGetUniqueId(&id) != ncclSuccess)
        return error_set(err, "NCCL: ncclGetUniqueId failed");
    if (c->size > 1) MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    ncclComm_t nc;
    ncclResult_t r = ncclCommInitRank(&nc, c->size, id, c->rank);
    if (r != ncclSuccess)
        return error_set(err, "NCCL: rank %d of %d: %s", c->rank, c->size,
                         ncclGetErrorString(r));
    c->nccl = nc;
    return 0;
}

void comm_nccl_close(Comm *c) {
    if (c->nccl) ncclCommDestroy((ncclComm_t)c->nccl);
    c->nccl = NULL;
}

// Waits for the exchange queued on the default stream (where every op of the CUDA backend
// runs), at most c->timeout seconds; a rank that never answers aborts the communicator.
static int wait_for(Comm *c, ncclResult_t queued, const char *what, Error *err) {
    ncclComm_t nc = (ncclComm_t)c->nccl;
    if (queued != ncclSuccess)
        return error_set(err, "NCCL while %s: %s", what, ncclGetErrorString(queued));
    double t0 = now_seconds();
    for (;;) {
        cudaError_t e = cudaStreamQuery(0);
        if (e == cudaSuccess) return 0;
        if (e != cudaErrorNotReady)
            return error_set(err, "CUDA while %s: %s", what, cudaGetErrorString(e));
        ncclResult_t async;
        ncclCommGetAsyncError(nc, &async);
        if (async != ncclSuccess)
            return error_set(err, "NCCL while %s: %s", what, ncclGetErrorString(async));
        if (now_seconds() - t0 > c->timeout) {
            ncclCommAbort(nc);
            c->nccl = NULL;
            return error_set(err, "rank %d of %d: no answer from the other ranks for %.0f s "
                                  "while %s (a rank died or hangs; --comm-timeout sets the wait)",
                             c->rank, c->size, c->timeout, what);
        }
        nanosleep(&(struct timespec){0, 100000}, NULL);
    }
}

int comm_nccl_exchange_shards(Comm *c, const float *send, float *recv, size_t n, Error *err) {
    ncclComm_t nc = (ncclComm_t)c->nccl;
    size_t mine_lo, mine;
    comm_shard(n, c->size, c->rank, &mine_lo, &mine);
    ncclResult_t r = ncclGroupStart();
    for (int p = 0; p < c->size && r == ncclSuccess; p++) {
        size_t lo, len;
        comm_shard(n, c->size, p, &lo, &len);
        r = ncclSend(send + lo, len, ncclFloat32, p, nc, 0);
        if (r == ncclSuccess) r = ncclRecv(recv + (size_t)p * mine, mine, ncclFloat32, p, nc, 0);
    }
    ncclResult_t end = ncclGroupEnd();
    return wait_for(c, r != ncclSuccess ? r : end, "summing the gradients", err);
}

int comm_nccl_gather_shards(Comm *c, float *buf, size_t n, Error *err) {
    ncclComm_t nc = (ncclComm_t)c->nccl;
    size_t mine_lo, mine;
    comm_shard(n, c->size, c->rank, &mine_lo, &mine);
    ncclResult_t r = ncclGroupStart();
    for (int p = 0; p < c->size && r == ncclSuccess; p++) {
        if (p == c->rank) continue;
        size_t lo, len;
        comm_shard(n, c->size, p, &lo, &len);
        r = ncclSend(buf + mine_lo, mine, ncclFloat32, p, nc, 0);
        if (r == ncclSuccess) r = ncclRecv(buf + lo, len, ncclFloat32, p, nc, 0);
    }
    ncclResult_t end = ncclGroupEnd();
    return wait_for(c, r != ncclSuccess ? r : end, "gathering the updated weights", err);
}

int comm_nccl_gather_to_root(Comm *c, const float *mine, float *all, size_t n, Error *err) {
    ncclComm_t nc = (ncclComm_t)c->nccl;
    size_t mine_lo, len;
    comm_shard(n, c->size, c->rank, &mine_lo, &len);
    ncclResult_t r = ncclGroupStart();
    if (c->rank != 0) {
        r = ncclSend(mine, len, ncclFloat32, 0, nc, 0);
    } else {
        cudaMemcpyAsync(all, mine, len * sizeof(float), cudaMemcpyDeviceToDevice, 0);
        for (int p = 1; p < c->size && r == ncclSuccess; p++) {
            size_t lo, plen;
            comm_shard(n, c->size, p, &lo, &plen);
            r = ncclRecv(all + lo, plen, ncclFloat32, p, nc, 0);
        }
    }
    ncclResult_t end = ncclGroupEnd();
    return wait_for(c, r != ncclSuccess ? r : end, "gathering the optimizer state to save it",
                    err);
}

#else  // built without NCCL (or without MPI, which starts NCCL's ranks)

int comm_nccl_open(Comm *c, Error *err) {
    return error_set(err, "%d ranks on the %s backend need NCCL, and this dllm was built "
                          "without it (NCCL_HOME with include/nccl.h and lib/libnccl.so, and MPI)",
                     c->size, c->be ? c->be->name : "cuda");
}

void comm_nccl_close(Comm *c) { (void)c; }

int comm_nccl_exchange_shards(Comm *c, const float *send, float *recv, size_t n, Error *err) {
    (void)send, (void)recv, (void)n;
    return comm_nccl_open(c, err);
}

int comm_nccl_gather_shards(Comm *c, float *buf, size_t n, Error *err) {
    (void)buf, (void)n;
    return comm_nccl_open(c, err);
}

int comm_nccl_gather_to_root(Comm *c, const float *mine, float *all, size_t n, Error *err) {
    (void)mine, (void)all, (void)n;
    return comm_nccl_open(c, err);
}

#endif
