// A sweep plan (markdown): sections, tables, grids, budgets.
#include "sweep/plan.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static Plan p;  // large
    Error err;
    plan_load(&p, fuzz_file("plan.md", data, size), &err);
    return 0;
}
