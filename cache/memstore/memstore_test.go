package memstore_test

import (
	"testing"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/memstore"
	"github.com/gdprgate/gdprgate/cache/storetest"
)

func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) cache.Store { return memstore.New(cache.Options{}) })
}
