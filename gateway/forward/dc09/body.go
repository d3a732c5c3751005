package dc09

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/vigil-gw/vigil/gateway/forward"
)

// Format selects the event body a Client sends.
type Format string

// Body formats.
const (
	// FormatADMCID sends Ademco Contact ID bodies, "#acct|QEEE GG ZZZ". It is
	// the default because every ARC receiver understands it.
	FormatADMCID Format = "adm-cid"
	// FormatSIADCS sends SIA DC-03 bodies, "#acct|Nri1/CCzzz".
	FormatSIADCS Format = "sia-dcs"
)

// eventCode holds how one Vigil event type is reported in each format.
type eventCode struct {
	cid        string // Contact ID event code; the restore uses qualifier 3
	sia        string // SIA DC-03 code for the event
	siaRestore string // SIA DC-03 code for its restore; "" if it has none
}

// eventCodes is the one table mapping forward.Message.Event to DC-09 codes.
// It is read-only. SIA codes and their meanings follow the SIA DC-03 code list
// (as tabulated in pysiaalarm's src/pysiaalarm/data/sia_codes.json).
//
//   - supervision_lost: Contact ID 381 is "loss of supervision – RF". Its SIA
//     pair YC "communications fail" / YK "communications restoral" is the one
//     pysiaalarm's Contact-ID-to-SIA table (src/pysiaalarm/data/adm_mapping.json)
//     gives for 381, so both formats tell the ARC the same thing.
//   - amber_overrun restores with NS "activity resumed" (a zone has detected
//     activity after an alert). NR would be wrong: in DC-03 it is "network
//     restoral", not the restore of NA "no activity".
var eventCodes = map[string]eventCode{
	"duress":           {cid: "121", sia: "HA", siaRestore: "HR"}, // hold-up: silent alarm, user under duress
	"duress_covert":    {cid: "122", sia: "HA", siaRestore: "HR"}, // silent panic: a cancel made with the duress PIN
	"device_offline":   {cid: "381", sia: "YC", siaRestore: "YK"}, // as supervision_lost, when routed to an ARC
	"panic":            {cid: "120", sia: "PA", siaRestore: "PR"},
	"medical":          {cid: "100", sia: "MA", siaRestore: "MR"},
	"man_down":         {cid: "100", sia: "MA", siaRestore: "MR"},
	"amber_overrun":    {cid: "102", sia: "NA", siaRestore: "NS"}, // fail to report in
	"low_battery":      {cid: "302", sia: "YT", siaRestore: "YR"},
	"supervision_lost": {cid: "381", sia: "YC", siaRestore: "YK"},
	"test":             {cid: "602", sia: "RP"}, // periodic test; has no restore
}

// Limits on extended data.
const (
	maxTextLen = 64
	partition  = "01" // Contact ID group/partition; SIA "ri1" is the same area
)

// errEvent is wrapped by every error about a message Vigil cannot express in
// DC-09; such errors are also marked forward.Permanent.
var errEvent = errors.New("dc09: message cannot be sent")

// eventBody returns the frame ID, data and extended data for m.
func eventBody(m forward.Message, format Format, account string) (id, data string, xdata []string, err error) {
	code, ok := eventCodes[strings.ToLower(strings.TrimSpace(m.Event))]
	if !ok {
		return "", "", nil, fmt.Errorf("%w: event type %q has no DC-09 code", errEvent, m.Event)
	}
	var restore bool
	switch m.Kind {
	case forward.KindAlarm, "":
		// An empty kind is sent as an alarm: for a life-safety message,
		// reporting too much beats reporting nothing.
	case forward.KindRestore:
		restore = true
	default:
		return "", "", nil, fmt.Errorf("%w: kind %q is neither %q nor %q", errEvent, m.Kind, forward.KindAlarm, forward.KindRestore)
	}
	if m.Zone < 0 || m.Zone > 999 {
		return "", "", nil, fmt.Errorf("%w: zone %d is outside 0–999", errEvent, m.Zone)
	}
	zone := fmt.Sprintf("%03d", m.Zone)

	switch format {
	case FormatADMCID, "":
		if restore && code.siaRestore == "" {
			return "", "", nil, fmt.Errorf("%w: event %q has no restore", errEvent, m.Event)
		}
		q := "1"
		if restore {
			q = "3"
		}
		id, data = IDADMCID, fmt.Sprintf("#%s|%s%s %s %s", account, q, code.cid, partition, zone)
	case FormatSIADCS:
		sia := code.sia
		if restore {
			if code.siaRestore == "" {
				return "", "", nil, fmt.Errorf("%w: event %q has no restore", errEvent, m.Event)
			}
			sia = code.siaRestore
		}
		id, data = IDSIADCS, fmt.Sprintf("#%s|Nri1/%s%s", account, sia, zone)
	default:
		return "", "", nil, fmt.Errorf("%w: format %q is neither %q nor %q", errEvent, format, FormatADMCID, FormatSIADCS)
	}
	return id, data, extendedData(m), nil
}

// extendedData returns the [H], [X], [Y] and [I] fields for m. Bad or missing
// values are left out rather than failing: an alarm without a position is
// still an alarm.
func extendedData(m forward.Message) []string {
	var x []string
	if !m.Time.IsZero() {
		if y := m.Time.UTC().Year(); y >= 0 && y <= 9999 {
			x = append(x, "H"+formatTimestamp(m.Time))
		}
	}
	if l := m.Location; l != nil && validCoord(l.Lon, 180) && validCoord(l.Lat, 90) {
		x = append(x, fmt.Sprintf("X%.6f", l.Lon), fmt.Sprintf("Y%.6f", l.Lat))
	}
	text := alarmText(m.Text)
	if !m.Verified {
		text = strings.TrimSpace("UNVERIFIED " + text)
	}
	if len(text) > maxTextLen {
		text = strings.TrimSpace(text[:maxTextLen])
	}
	if text != "" {
		x = append(x, "I"+text)
	}
	return x
}

func validCoord(v, limit float64) bool {
	return !math.IsNaN(v) && !math.IsInf(v, 0) && v >= -limit && v <= limit
}

// alarmText keeps printable ASCII other than '[', ']' and '|' (which would
// break the frame or confuse receivers that split on '|'), collapses runs of
// spaces and caps the length.
func alarmText(s string) string {
	var b strings.Builder
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7E || c == '[' || c == ']' || c == '|' {
			continue
		}
		if c == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		b.WriteByte(c)
	}
	out := strings.TrimSpace(b.String())
	if len(out) > maxTextLen {
		out = strings.TrimSpace(out[:maxTextLen])
	}
	return out
}
