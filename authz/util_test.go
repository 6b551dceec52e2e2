package authz_test

import (
	"io"
	"strings"
)

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

func containsStr(s, sub string) bool { return strings.Contains(s, sub) }
