package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportTable enforces the package boundaries in ARCHITECTURE.md: each
// top-level folder may not depend on the folders listed for it, directly
// or through anything it imports.
func TestImportTable(t *testing.T) {
	const mod = "github.com/vigil-gw/vigil/"
	forbidden := map[string][]string{
		"devices":      {"gateway", "evidence", "governance"},
		"evidence":     {"gateway", "devices", "governance"},
		"governance":   {"devices"},
		"firmware-sim": {"gateway", "evidence", "governance"},
		// The police verifier is handed to outsiders: evidence only.
		"cmd/vigil-verify": {"gateway", "governance", "devices"},
	}
	for folder, not := range forbidden {
		out, err := exec.Command("go", "list", "-deps", mod+folder+"/...").Output()
		if err != nil {
			t.Fatalf("go list %s: %v", folder, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			rest, ok := strings.CutPrefix(dep, mod)
			if !ok {
				continue
			}
			for _, n := range not {
				if rest == n || strings.HasPrefix(rest, n+"/") {
					t.Errorf("%s depends on %s, which ARCHITECTURE.md forbids", folder, dep)
				}
			}
		}
	}
}
