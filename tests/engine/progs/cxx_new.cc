// operator new (libstdc++, built without frame pointers) between the program and malloc:
// the function that called new must come right after it in "allocated by".
#include <cstdio>
#include <unistd.h>
#include <vector>

struct Order {
	long id;
	long qty[3];
};

__attribute__((noipa)) Order *make_order(long id)
{
	Order *o = new Order{id, {1, 2, 3}};
	return o;
}

__attribute__((noipa)) long total(Order *o)
{
	((volatile long *)o->qty)[4] = 0;   // past the end: qty[2] is the last
	return o->qty[0] + o->qty[1] + o->qty[2];
}

int main()
{
	std::printf("pid=%d\n", (int)getpid());
	Order *o = make_order(7);
	std::printf("buf=%#lx\n", (unsigned long)o);
	std::fflush(stdout);
	long t = total(o);
	delete o;
	std::printf("t=%ld\ndone\n", t);
	return 0;
}
