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

#include "libdeflate.h"

static void put_le32(unsigned char *p, unsigned int v) {
  p[0] = v;
  p[1] = v >> 8;
  p[2] = v >> 16;
  p[3] = v >> 24;
}

/*
 * One gzip member (RFC 1952) of `in`, byte for byte what libdeflate_gzip_compress writes, but
 * with the CRC-32 the caller computed: the host's zlib computes it 5-7 times faster than
 * this module can (libdeflate's portable CRC took 7-11 % of the member's time). Returns the
 * member's size, or 0 when `avail` is too small or `size` over 1 GiB (build.sh's level 1
 * keeps positions in a table that never slides: they must stay far below 2^31).
 */
size_t wasm_gzip_member(struct libdeflate_compressor *c, int level, const void *in, size_t size,
                        unsigned char *out, size_t avail, unsigned int crc) {
  if (avail <= 18 || size > ((size_t)1 << 30)) return 0;
  static const unsigned char header[8] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0};
  for (int i = 0; i < 8; i++) out[i] = header[i];
  out[8] = level < 2 ? 4 : level >= 8 ? 2 : 0; /* XFL: fastest, slowest, or neither */
  out[9] = 255;                                /* OS: unknown */
  size_t deflated = libdeflate_deflate_compress(c, in, size, out + 10, avail - 18);
  if (deflated == 0) return 0;
  put_le32(out + 10 + deflated, crc);
  put_le32(out + 14 + deflated, (unsigned int)size);
  return deflated + 18;
}
