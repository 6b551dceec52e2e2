package bufpool

import "testing"

func TestGetServesTheLengthAskedWhateverWasPutBack(t *testing.T) {
	for _, size := range []int{0, 1, 255, 256, 257, 4096, 1 << 20, 1<<20 + 1, 1<<26 + 1} {
		b := Pool.Get(size)
		if len(*b) != size {
			t.Fatalf("Get(%d): len %d", size, len(*b))
		}
		Pool.Put(b)
		// A foreign buffer of an odd capacity serves only sizes it holds.
		odd := make([]byte, 3000)
		Pool.Put(&odd)
		if b := Pool.Get(size); len(*b) != size || cap(*b) < size {
			t.Fatalf("Get(%d) after Puts: len %d cap %d", size, len(*b), cap(*b))
		}
	}
}
