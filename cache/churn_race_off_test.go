//go:build !race

package cache_test

const churnRace = false
