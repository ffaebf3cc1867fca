/*
 * Trapping from several threads at once (tests/test_trap.py, under
 * LD_PRELOAD=libklemu-preload.so): each thread makes HANDLES handles for
 * key 00..0f with byte 0 = thread number and byte 1 = 1 + handle number,
 * encrypts FIPS-197's block once with its first key (printed, for the
 * reference model), then runs encrypt/decrypt round trips rotating through
 * its handles and counts the ones that do not return the block or the
 * expected ciphertext.  The emulator context and its unwrap cache (4 ways,
 * far fewer than the handles in flight, so entries are refilled all the
 * time) are shared: this fails if trapping threads are not serialized.
 *
 *   trap_threads THREADS ROUNDS   ->   "thread <i> <ciphertext hex> bad <n>"
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t PT[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
			       0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};

#define HANDLES 3

struct job {
	int id, rounds, bad;
	uint8_t first[16];
};

static void encode(const uint8_t key[16], uint8_t h[48])
{
	__asm__ volatile("movdqu (%[k]), %%xmm0\n\t"
			 "encodekey128 %%ecx, %%eax\n\t"
			 "movdqu %%xmm0, 0(%[h])\n\tmovdqu %%xmm1, 16(%[h])\n\tmovdqu %%xmm2, 32(%[h])\n\t"
			 : : "a"(0), "c"(0), [k] "r"(key), [h] "r"(h)
			 : "xmm0", "xmm1", "xmm2", "xmm4", "xmm5", "xmm6", "memory", "cc");
}

static int crypt(const uint8_t h[48], uint8_t block[16], int decrypt)
{
	uint8_t zf;

	if (decrypt)
		__asm__ volatile("movdqu (%[b]), %%xmm5\n\taesdec128kl (%[h]), %%xmm5\n\tsetz %[zf]\n\t"
				 "movdqu %%xmm5, (%[b])\n\t"
				 : [zf] "=r"(zf) : [b] "r"(block), [h] "r"(h) : "xmm5", "memory", "cc");
	else
		__asm__ volatile("movdqu (%[b]), %%xmm5\n\taesenc128kl (%[h]), %%xmm5\n\tsetz %[zf]\n\t"
				 "movdqu %%xmm5, (%[b])\n\t"
				 : [zf] "=r"(zf) : [b] "r"(block), [h] "r"(h) : "xmm5", "memory", "cc");
	return zf;
}

static void *worker(void *arg)
{
	struct job *j = arg;
	uint8_t key[16], h[HANDLES][48], ct[HANDLES][16], b[16];

	for (int k = 0; k < HANDLES; k++) {
		for (int i = 0; i < 16; i++)
			key[i] = (uint8_t)i;
		key[0] = (uint8_t)j->id;
		key[1] = (uint8_t)(1 + k);
		encode(key, h[k]);
		memcpy(ct[k], PT, 16);
		j->bad += crypt(h[k], ct[k], 0);
	}
	memcpy(j->first, ct[0], 16);
	for (int r = 0; r < j->rounds; r++) {
		int k = r % HANDLES;

		memcpy(b, PT, 16);
		j->bad += crypt(h[k], b, 0);
		j->bad += memcmp(b, ct[k], 16) != 0;
		j->bad += crypt(h[k], b, 1);
		j->bad += memcmp(b, PT, 16) != 0;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 4, rounds = argc > 2 ? atoi(argv[2]) : 1000;
	pthread_t t[64];
	struct job jobs[64];

	if (n < 1 || n > 64)
		return 2;
	for (int i = 0; i < n; i++) {
		jobs[i] = (struct job){.id = i, .rounds = rounds};
		if (pthread_create(&t[i], NULL, worker, &jobs[i]))
			return 2;
	}
	for (int i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		printf("thread %d ", i);
		for (int k = 0; k < 16; k++)
			printf("%02x", jobs[i].first[k]);
		printf(" bad %d\n", jobs[i].bad);
	}
	return 0;
}
