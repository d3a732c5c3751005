package app

import (
	"fmt"
	"net/http"
	"sort"

	"github.com/vigil-gw/vigil/gateway/alert"
	"github.com/vigil-gw/vigil/gateway/console"
	"github.com/vigil-gw/vigil/governance/access"
)

// consoleRoutes serves the control-room console at /console/ (and sends /
// there) and its live event stream at GET /api/events, which is
// authenticated like the rest of the API.
//
// The engine tells a broadcaster of every committed change; the broadcaster
// never blocks the engine, and each open stream re-reads the board itself.
func (a *App) consoleRoutes(mux *http.ServeMux) {
	changes := console.NewBroadcaster()
	a.engine.SetOnChange(changes.Notify)
	c := console.New(console.Config{
		Alerts:  a.engine,
		Changes: changes,
		MayReadDevices: func(r *http.Request) bool {
			return caller(r).Role.Allows(access.ReadDevices)
		},
		Devices:  a.deviceBoard,
		Outcomes: alert.Outcomes,
		Logger:   a.log,
	})
	mux.Handle("GET "+console.Path, c.Assets())
	mux.Handle("GET /{$}", http.RedirectHandler(console.Path, http.StatusFound))
	mux.HandleFunc("GET /api/events", a.guard(access.ReadAlerts, c.Events))
}

// deviceBoard joins the registry with what the engine last heard from each
// device: every registered device, and any unregistered one that was heard
// (an unverified duress).
func (a *App) deviceBoard() ([]console.Device, error) {
	reg, err := a.registry.List()
	if err != nil {
		return nil, fmt.Errorf("device board: registry: %w", err)
	}
	status, err := a.engine.Status()
	if err != nil {
		return nil, fmt.Errorf("device board: status: %w", err)
	}
	heard := make(map[string]alert.DeviceStatus, len(status))
	for _, s := range status {
		heard[s.Device] = s
	}
	out := make([]console.Device, 0, len(reg))
	fill := func(d *console.Device, s alert.DeviceStatus) {
		d.LastSeen, d.LastType, d.Battery, d.BatteryLow, d.OfflineAlert = s.LastSeen, s.LastType, s.Battery, s.BatteryLow, s.OfflineAlert
		d.Online = d.Registered && !s.LastSeen.IsZero() && s.OfflineAlert == ""
	}
	for _, r := range reg {
		d := console.Device{ID: r.ID, Kind: string(r.Kind), Site: r.Site, Wearer: r.Wearer, Registered: true}
		if s, ok := heard[r.ID]; ok {
			fill(&d, s)
			delete(heard, r.ID)
		}
		out = append(out, d)
	}
	var unknown []console.Device
	for _, s := range heard {
		d := console.Device{ID: s.Device, Site: s.Site}
		fill(&d, s)
		unknown = append(unknown, d)
	}
	sort.Slice(unknown, func(i, j int) bool { return unknown[i].ID < unknown[j].ID })
	return append(out, unknown...), nil
}
