// The HTML page of `GET /` (serve/page.c).
#ifndef DLLM_SERVE_PAGE_H
#define DLLM_SERVE_PAGE_H

extern const char serve_page[];

#endif
