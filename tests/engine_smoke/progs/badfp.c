/* malloc and free called with a garbage frame pointer (as from code built
 * without frame pointers, where rbp is an ordinary register): the engine's
 * stack walk must stop, never fault. x86-64 only. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(__x86_64__)
static void *call_with_rbp(void *fn, long rbp, void *arg)
{
	void *r;
	__asm__ volatile(
		"lea -128(%%rsp), %%rsp\n\t"   /* step over the red zone */
		"push %%rbp\n\t"
		"mov %%rsp, %%rbx\n\t"
		"and $-16, %%rsp\n\t"
		"mov %%rsi, %%rbp\n\t"
		"call *%%rax\n\t"
		"mov %%rbx, %%rsp\n\t"
		"pop %%rbp\n\t"
		"lea 128(%%rsp), %%rsp\n\t"
		: "=a"(r), "+D"(arg), "+S"(rbp)
		: "a"(fn)
		: "rbx", "rcx", "rdx", "r8", "r9", "r10", "r11", "memory", "cc");
	return r;
}
#endif

int main(void)
{
#if defined(__x86_64__)
	long junk[] = {-8, -16, -4096, 8, 0x7ffffffff000, (long)&junk, (long)&junk + 4096 * 16, 0x1000};
	for (unsigned i = 0; i < sizeof junk / sizeof junk[0]; i++) {
		for (int k = 0; k < 50; k++) {
			void *p = call_with_rbp((void *)malloc, junk[i], (void *)(uintptr_t)(16 + k));
			if (!p)
				return 2;
			call_with_rbp((void *)free, junk[i], p);
		}
	}
#endif
	puts("badfp ok");
	return 0;
}
