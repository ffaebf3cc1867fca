/*
 * The one check macro of the C unit programs under tests/c (klemu_unit,
 * trap_unit): a failed condition prints "FAIL file:line: condition" and
 * counts; the program exits non-zero when `failures` is not 0, and the
 * Python test that runs it fails on any "FAIL" line.  Include once per
 * program (it defines the counter).
 */
#ifndef KLH_TESTS_CHECK_H
#define KLH_TESTS_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			failures++;                                            \
		}                                                              \
	} while (0)

#endif
