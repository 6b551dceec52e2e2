package cache

// lcg is the tests' random source: next(n) is in [0, n), and a seed gives
// the same sequence on every run, so a failure replays.
func lcg(seed uint64) func(n int) int {
	rnd := seed
	return func(n int) int {
		rnd = rnd*6364136223846793005 + 1442695040888963407
		return int(rnd>>33) % n
	}
}

// LCG is lcg for the external tests (package cache_test).
var LCG = lcg
