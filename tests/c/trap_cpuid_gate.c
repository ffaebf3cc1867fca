/*
 * An unmodified Key Locker program that asks CPUID before it uses KL, the way
 * Rust's std_detect and glibc's <sys/platform/x86.h> decide (KEYLOCKER.md §2):
 * KL is usable only when CPUID.(7,0):ECX[23] and CPUID.(0x19,0):EBX[0]
 * (AESKLE) are both set.  With KL it wraps the FIPS-197 C.1 key and encrypts
 * the C.1 plaintext with AESENC128KL (GCC intrinsics, -mkl); without it, it
 * says so and takes its software path (nothing to check there).
 *
 * Output, one line:
 *   path kl max_leaf 0xNN leaf19 EAX EBX ECX EDX encode_dest D zf Z ct HEX
 *   path no-kl max_leaf 0xNN kl B aeskle B
 *
 * Under LD_PRELOAD=libklemu-preload.so it takes the KL path only where CPUID
 * faulting lets the trap answer CPUID (tests/test_trap.py).
 */
#include <cpuid.h>
#include <immintrin.h>
#include <stdio.h>
#include <string.h>

static void hex(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
}

int main(void)
{
	unsigned a = 0, b = 0, c = 0, d = 0;
	unsigned max_leaf = __get_cpuid_max(0, NULL);
	int kl = 0, aeskle = 0;

	if (max_leaf >= 7) {
		__cpuid_count(7, 0, a, b, c, d);
		kl = c >> 23 & 1;
	}
	if (max_leaf >= 0x19) {
		__cpuid_count(0x19, 0, a, b, c, d);
		aeskle = b & 1;
	}
	if (!kl || !aeskle) {
		printf("path no-kl max_leaf %#x kl %d aeskle %d\n", max_leaf, kl, aeskle);
		return 0;
	}

	static const unsigned char key[16] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
					      0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
	static const unsigned char pt[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
					     0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
	unsigned char handle[48], ct[16];
	__m128i k, p, out;
	memcpy(&k, key, 16);
	memcpy(&p, pt, 16);
	unsigned dest = _mm_encodekey128_u32(0, k, handle);
	unsigned char zf = _mm_aesenc128kl_u8(&out, p, handle);
	memcpy(ct, &out, 16);

	printf("path kl max_leaf %#x leaf19 %#x %#x %#x %#x encode_dest %u zf %u ct ", max_leaf, a, b, c, d, dest,
	       zf);
	hex(ct, 16);
	printf("\n");
	return 0;
}
