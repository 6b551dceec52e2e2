package memstore_test

import (
	"context"
	"testing"

	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/memstore"
	"github.com/gdprgate/gdprgate/cache/storetest"
)

func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) cache.Store { return memstore.New(cache.Options{}) })
}

func BenchmarkFactsWarmHit(b *testing.B) {
	s := memstore.New(cache.Options{})
	ctx := context.Background()
	if _, err := s.SaveRegisters(ctx, storetest.Registers(), 0, audit.Entry{Actor: "bench", Action: "register.replace"}); err != nil {
		b.Fatal(err)
	}
	ref := model.SubjectRef{Entity: "contact", ID: "c-1"}
	if _, err := s.Facts(ctx, ref, storetest.T0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Facts(ctx, ref, storetest.T0); err != nil {
			b.Fatal(err)
		}
	}
}
