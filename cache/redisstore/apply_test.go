package redisstore

import (
	"sync"
	"testing"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/policy/model"
)

// TestRegisterInvalidationSurvivesAConcurrentDrop: a register-change message
// ("r <version>") arriving while another goroutine drops or replaces the
// cached index must not read an index that vanished in between (a nil
// dereference that once took a sidecar down in an e2e run under -race).
func TestRegisterInvalidationSurvivesAConcurrentDrop(t *testing.T) {
	s := &Store{local: cache.NewLocal(cache.Options{})}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.local.SetIndex(&model.Index{Version: 5})
			s.local.DropIndex()
		}
	}()
	for range 200000 {
		s.apply("0 1 r 5")
	}
	close(stop)
	wg.Wait()
	// The message for the cached version keeps it; another drops it.
	s.local.SetIndex(&model.Index{Version: 5})
	s.apply("0 2 r 5")
	if ix := s.local.Index(); ix == nil || ix.Version != 5 {
		t.Fatalf("index after a message for its own version: %v", ix)
	}
	s.apply("0 3 r 6")
	if ix := s.local.Index(); ix != nil {
		t.Fatalf("index after a message for another version: %v", ix)
	}
}
