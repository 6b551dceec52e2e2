//go:build !linux

package binpages

// Release does nothing where the platform has no MADV_DONTNEED.
func Release(evict bool) (int64, error) { return 0, ErrUnsupported }
