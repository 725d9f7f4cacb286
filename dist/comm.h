// The processes of a data-parallel training job and what they exchange. One process per
// device, started by a launcher (mpirun, Slurm's srun); without one a job of a single process,
// whose exchanges copy nothing. Between processes: MPI for host memory (the CPU backend), NCCL
// for the CUDA backend's device memory (a build with NCCL). Every exchange waits at most
// `timeout` seconds for the other ranks, so a dead or hung rank ends the job with a message
// instead of a hang.
#ifndef DLLM_COMM_H
#define DLLM_COMM_H

#include <stddef.h>

#include "common/error.h"
#include "kernels/backend.h"

typedef struct {
    int rank, size;     // this process and the job's process count
    int local_rank;     // this process among the job's processes on its machine
    double timeout;     // seconds an exchange may wait for the other ranks
    int mpi;            // 1: MPI was initialised (a launcher started the job)
    void *nccl;         // NCCL communicator for device memory (comm_use_backend), or NULL
    const Backend *be;  // whose memory the shard exchanges move
} Comm;

// Joins the job a launcher started this process in (MPI), or makes a job of one process.
// A launcher's job of several processes in a build without MPI is refused by name.
int comm_open(Comm *c, double timeout, Error *err);
// The backend whose memory comm_exchange_shards / comm_gather_shards move: host memory through
// MPI, CUDA memory through NCCL (refused in a build without it, when the job has several ranks).
int comm_use_backend(Comm *c, const Backend *be, Error *err);
void comm_close(Comm *c);
// Ends every process of the job (MPI_Abort) with exit status code; a job of one just exits.
void comm_abort(const Comm *c, int code);

// The values [*lo, *lo + *len) of n that rank r owns: n split in size near-equal shards of
// whole SUM_SQUARES_CHUNK chunks (the unit of a gradient norm's partial sums), so the first
// ranks hold one chunk more and a rank may hold none of a small vector.
void comm_shard(size_t n, int size, int r, size_t *lo, size_t *len);
// Sends every rank its shard of send (n values): recv receives, in rank order, one copy of this
// rank's shard from each rank (size * len values; a job of one copies its values).
int comm_exchange_shards(Comm *c, const float *send, float *recv, size_t n, Error *err);
// Every rank's shard of buf (n values) to every rank, in place.
int comm_gather_shards(Comm *c, float *buf, size_t n, Error *err);
// Every rank's shard (mine: its len values of n) into all (n values) on rank 0; all is
// unused elsewhere (NULL allowed).
int comm_gather_to_root(Comm *c, const float *mine, float *all, size_t n, Error *err);
// bytes of host memory from every rank into all, in rank order (size * bytes).
int comm_gather_host(Comm *c, const void *mine, void *all, size_t bytes, Error *err);

#endif
