package gate_test

import (
	"context"
	"testing"

	"github.com/gdprgate/gdprgate/internal/apptest"
)

// TestRequestBodyMattersUnlessNoRouteCanUseIt: a front-end may stream a
// body unread only to a path no route maps under any method (a form POST
// could override its method to one that is mapped).
func TestRequestBodyMattersUnlessNoRouteCanUseIt(t *testing.T) {
	g := apptest.New(t, apptest.Options{}).App.Gate
	for _, c := range []struct {
		method, target string
		want           bool
	}{
		{"POST", "/upload/blob", false},
		{"PUT", "/files/a/b?x=1", false},
		{"POST", "/api/calls", true},            // a communication route
		{"POST", "/api/contacts/c-1", true},     // mapped for other methods
		{"PATCH", "/API//contacts/./c-1", true}, // another spelling of a mapped path
		{"POST", "/api/contacts%2Fc-1", true},   // unreadable: Check refuses it
		{"POST", "/upload/%zz", true},           // unreadable
		{"BREW", "/upload/blob", false},         // an unknown method of an unmapped path
		{"PO ST", "/upload/blob", true},         // not a method
	} {
		if got := g.RequestBodyMatters(context.Background(), c.method, c.target); got != c.want {
			t.Errorf("%s %s: body matters %v, want %v", c.method, c.target, got, c.want)
		}
	}
}
