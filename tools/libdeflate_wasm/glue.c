/*
 * Our glue for libdeflate built as WebAssembly (see build.sh): memory for libdeflate and for
 * the caller's buffers, from the module's own linear memory.
 *
 * An instance keeps one compressor per level and one input and one output buffer for its
 * whole life, so a bump allocator that never frees is all it needs: nothing is allocated
 * per block, and the memory stays as large as the first block made it.
 */
#include <stddef.h>

void libdeflate_set_memory_allocator(void *(*malloc_func)(size_t), void (*free_func)(void *));

/* Where the linker ends the module's static data: the heap starts here. */
extern unsigned char __heap_base;

static size_t heap_top;

/* `size` bytes aligned to 16, growing the memory when needed; 0 when it cannot grow. */
void *wasm_alloc(size_t size) {
  if (heap_top == 0) heap_top = (size_t)&__heap_base;
  size_t start = (heap_top + 15) & ~(size_t)15;
  size_t end = start + size;
  if (end < start) return 0;
  size_t have = __builtin_wasm_memory_size(0) * 65536;
  if (end > have && __builtin_wasm_memory_grow(0, (end - have + 65535) / 65536) == (size_t)-1) {
    return 0;
  }
  heap_top = end;
  return (void *)start;
}

/* Freed memory is never reused (see above). */
static void wasm_free(void *pointer) { (void)pointer; }

/* Hands libdeflate the allocator; called once, before the first compressor. */
void wasm_init(void) { libdeflate_set_memory_allocator(wasm_alloc, wasm_free); }
