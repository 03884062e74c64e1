/* config/arena.c - the one allocator behind a loaded config.
 *
 * A config is a tree of small strings and arrays that all die together, and
 * aliases make the node tree a DAG. An arena turns that into one free with no
 * ownership bookkeeping: blocks are chained and released in config_free().
 */
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define BLOCK_SIZE 16384

typedef struct arena_block {
	struct arena_block *next;
	size_t used, size;
	alignas(max_align_t) unsigned char data[];
} arena_block;

struct config_arena {
	arena_block *head;
};

/* Test seam: >= 0 makes the arena fail after that many more allocations,
 * so a test can walk every out-of-memory path of the loader. */
static long fail_countdown = -1;

void config_arena_fail_after(long allocations)
{
	fail_countdown = allocations;
}

config_arena *config_arena_new(void)
{
	return calloc(1, sizeof(config_arena));
}

void config_arena_free(config_arena *a)
{
	if (!a)
		return;
	arena_block *b = a->head;
	while (b) {
		arena_block *next = b->next;
		free(b);
		b = next;
	}
	free(a);
}

static arena_block *block_new(size_t size)
{
	arena_block *b = malloc(sizeof(arena_block) + size);
	if (!b)
		return NULL;
	b->next = NULL;
	b->used = 0;
	b->size = size;
	return b;
}

void *config_arena_alloc(config_arena *a, size_t size)
{
	const size_t align = alignof(max_align_t);
	if (fail_countdown >= 0 && fail_countdown-- == 0)
		return NULL;
	if (size == 0)
		size = 1;
	if (size > SIZE_MAX - align)
		return NULL;
	size = (size + align - 1) & ~(align - 1);

	arena_block *b = a->head;
	if (!b || b->size - b->used < size) {
		/* A large request gets its own block behind the current one, so
		 * the current block's free space is not wasted. */
		if (size > BLOCK_SIZE / 4) {
			arena_block *big = block_new(size);
			if (!big)
				return NULL;
			if (b) {
				big->next = b->next;
				b->next = big;
			} else {
				a->head = big;
			}
			big->used = size;
			memset(big->data, 0, size);
			return big->data;
		}
		b = block_new(BLOCK_SIZE);
		if (!b)
			return NULL;
		b->next = a->head;
		a->head = b;
	}
	void *p = b->data + b->used;
	b->used += size;
	memset(p, 0, size);
	return p;
}

char *config_arena_strndup(config_arena *a, const char *s, size_t len)
{
	if (len == SIZE_MAX)
		return NULL;
	char *copy = config_arena_alloc(a, len + 1);
	if (!copy)
		return NULL;
	memcpy(copy, s, len);
	copy[len] = '\0';
	return copy;
}
