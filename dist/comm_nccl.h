// The shard exchanges of dist/comm.h on CUDA device memory, through NCCL (point-to-point sends
// grouped per exchange, so shards may differ in size). A build without NCCL refuses them.
#ifndef DLLM_COMM_NCCL_H
#define DLLM_COMM_NCCL_H

#include "dist/comm.h"

// NCCL's communicator for the job c (several ranks: after MPI is up; one rank: alone, as
// test_gpu checks the exchanges on one device).
int comm_nccl_open(Comm *c, Error *err);
void comm_nccl_close(Comm *c);
int comm_nccl_exchange_shards(Comm *c, const float *send, float *recv, size_t n, Error *err);
int comm_nccl_gather_shards(Comm *c, float *buf, size_t n, Error *err);
int comm_nccl_gather_to_root(Comm *c, const float *mine, float *all, size_t n, Error *err);

#endif
