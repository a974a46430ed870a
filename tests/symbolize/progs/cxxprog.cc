// C++ names: DWARF gives them demangled; a stripped copy has only .dynsym's mangled ones.
#include <cstdio>

namespace shop {
struct Cart {
	__attribute__((noinline)) int total(int items) { return items * 3; } // LINE:total
};
} // namespace shop

int main()
{
	shop::Cart c;
	std::printf("%d\n", c.total(2));
	return 0;
}
