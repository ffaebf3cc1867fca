/*
 * Test driver for the vectors tool: kl_vectors_run on stdin/stdout with the
 * emulated backend over a Tiger Lake-like virtual CPU.  Only the tests build
 * it (the shipped entry point is `klprobe vectors`).
 *
 *   klvectors_main          run the tool
 *   klvectors_main --impl   print which AES/POLYVAL path the emulator uses
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "klvectors.h"

int main(int argc, char **argv)
{
	struct klemu_ctx *ctx;
	struct klemu_cpu cpu;
	struct kl_backend be;
	int rc;

	if (argc == 2 && strcmp(argv[1], "--impl") == 0) {
		puts(klemu_impl_name());
		return 0;
	}
	ctx = malloc(sizeof(*ctx));
	if (!ctx)
		return 2;
	klemu_cpu_tigerlake(&cpu);
	klemu_init(ctx, &cpu);
	kl_backend_emulated(&be, ctx);
	rc = kl_vectors_run(stdin, stdout, &be, ctx);
	free(ctx);
	return rc < 0 ? 2 : rc;
}
