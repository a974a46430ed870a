// No-false-positive C++ workload: new/delete, new[]/delete[], aligned new,
// std containers growing and shrinking, strings, exceptions (allocated by
// __cxa_allocate_exception), shared_ptr, and threads doing all of it.
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

struct alignas(64) Wide {
	char bytes[64 * 3];
};

static int work(int seed)
{
	int sum = 0;
	for (int round = 0; round < 120; round++) {
		int *one = new int(round);
		int *many = new int[(round % 40) + 1];
		for (int i = 0; i <= round % 40; i++)
			many[i] = i;
		sum += *one + many[round % 40];
		delete one;
		delete[] many;

		Wide *w = new Wide;
		if (reinterpret_cast<uintptr_t>(w) % 64 != 0)
			throw std::logic_error("aligned new misaligned");
		std::memset(w->bytes, 1, sizeof w->bytes);
		delete w;

		std::vector<std::string> v;
		for (int i = 0; i < 50; i++)
			v.push_back(std::string(static_cast<size_t>(i % 37), 'a' + i % 26) + std::to_string(i * seed));
		v.resize(10);
		v.shrink_to_fit();
		std::map<std::string, std::vector<int>> m;
		for (int i = 0; i < 60; i++)
			m[std::to_string(i % 23)].push_back(i);
		m.erase("3");
		std::unordered_map<int, std::shared_ptr<std::string>> u;
		for (int i = 0; i < 40; i++)
			u[i] = std::make_shared<std::string>(100 + i, 'x');
		for (auto &kv : m)
			sum += static_cast<int>(kv.second.size());
		try {
			throw std::runtime_error("error number " + std::to_string(round) + std::string(40, '!'));
		} catch (const std::exception &e) {
			sum += static_cast<int>(std::strlen(e.what()));
		}
	}
	return sum;
}

int main()
{
	std::vector<std::thread> ts;
	std::vector<int> results(4);
	for (int i = 0; i < 4; i++)
		ts.emplace_back([i, &results] { results[static_cast<size_t>(i)] = work(i + 1); });
	int main_sum = work(7);
	for (auto &t : ts)
		t.join();
	std::printf("sum=%d %d\n", main_sum, results[0]);
	std::printf("done\n");
	return 0;
}
