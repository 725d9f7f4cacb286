// emulation: cuBLAS's status type and message, with cuBLASLt's stand-in (cublasLt.h)
#pragma once
#define CUBLAS_V2_H_
#include "cublasLt.h"
