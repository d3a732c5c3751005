package alert

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
)

// SetRoutes changes where new alerts go; alerts already raised keep theirs.
func TestSetRoutesAppliesToNewAlerts(t *testing.T) {
	r := newRig(t)
	r.submit(t, r.event(devices.TypeDuress, 1, true))
	routes := Routes{ARC: []string{"arc0", "arc1"}, Webhooks: []string{"webhook0"}, Wearer: "wearer", Evidence: "evidence",
		ByPriority: map[int][]string{P1: {"arc1"}}}
	r.eng.SetRoutes(routes)
	routes.ByPriority[P1] = []string{"webhook0"} // the engine keeps its own copy
	r.submit(t, r.event(devices.TypeDuress, 2, true))

	before, err := r.eng.Get("btn-1.1")
	require.NoError(t, err)
	assert.Equal(t, []string{"arc0", "webhook0"}, before.Routes)
	after, err := r.eng.Get("btn-1.2")
	require.NoError(t, err)
	assert.Equal(t, []string{"arc1"}, after.Routes)
}
