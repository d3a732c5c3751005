package governance

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/vigil-gw/vigil/evidence"
	"github.com/vigil-gw/vigil/evidence/objstore"
	"github.com/vigil-gw/vigil/governance/access"
	"github.com/vigil-gw/vigil/governance/audit"
)

// Search selects clips; zero fields match everything the caller may see.
type Search struct {
	Wearer, Camera, Incident string
	From, To                 time.Time
}

func (q Search) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("wearer", q.Wearer)
	add("camera", q.Camera)
	add("incident", q.Incident)
	if !q.From.IsZero() {
		add("from", q.From.UTC().Format(time.RFC3339))
	}
	if !q.To.IsZero() {
		add("to", q.To.UTC().Format(time.RFC3339))
	}
	return strings.Join(parts, " ")
}

// Clips returns the clips matching q that the caller may see: all of them
// for an IG officer (metadata only), those of incidents assigned to an
// investigator, a wearer's own. The search itself is audited.
func (s *Service) Clips(ctx context.Context, who Who, q Search) ([]evidence.Clip, error) {
	r := audit.Record{Action: audit.ActionClipSearch, Incident: q.Incident, Camera: q.Camera, Detail: q.String()}
	sc, err := s.scope(ctx, who, access.SearchClips, r)
	if err != nil {
		return nil, err
	}
	switch sc {
	case access.ScopeOwn:
		if q.Wearer != "" && q.Wearer != who.Wearer {
			return nil, s.refuse(ctx, who, r, true, "a wearer may search only their own footage")
		}
		q.Wearer = who.Wearer
	case access.ScopeAssigned:
		if q.Incident != "" {
			if err := s.needAssigned(ctx, who, r, sc, q.Incident); err != nil {
				return nil, err
			}
		}
	}
	all, err := s.ev.List(ctx, evidence.Filter{Camera: q.Camera, From: q.From, To: q.To, Incident: q.Incident})
	if err != nil {
		return nil, err
	}
	var out []evidence.Clip
	for _, c := range all {
		if q.Wearer != "" && c.Wearer != q.Wearer {
			continue
		}
		if sc == access.ScopeOwn && (who.Wearer == "" || c.Wearer != who.Wearer) {
			continue
		}
		if sc == access.ScopeAssigned {
			ok, err := s.anyAssigned(ctx, c.Incidents, who.Name)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
		}
		out = append(out, c)
	}
	r.Detail = fmt.Sprintf("%d clips found", len(out))
	if q := q.String(); q != "" {
		r.Detail += " for " + q
	}
	return out, s.record(ctx, who, r)
}

// anyAssigned reports whether any of the incidents is assigned to user.
func (s *Service) anyAssigned(ctx context.Context, incidents []string, user string) (bool, error) {
	for _, inc := range incidents {
		ok, err := s.assigned(ctx, inc, user)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// Purposes of footage access.
const (
	View     = "view"
	Download = "download"
)

// AccessRequest asks to see one clip.
type AccessRequest struct {
	Camera, Clip string
	Why          string // the justification, at least MinJustification characters
	Incident     string // required when the clip is linked to an incident
	Purpose      string // View (default) or Download
}

// Grant is a time-limited link to footage.
type Grant struct {
	URL     string // absolute for S3; a path on Vigil's API (/api/footage/…) for local footage
	Expires time.Time
	Clip    evidence.Clip
}

// Access hands out a short-lived link to one clip after checking the
// caller's role and scope, the justification and the incident, and audits
// the outcome either way.
func (s *Service) Access(ctx context.Context, who Who, req AccessRequest) (Grant, error) {
	if req.Purpose == "" {
		req.Purpose = View
	}
	r := audit.Record{Action: audit.ActionClipView, Camera: req.Camera, Clip: req.Clip, Incident: req.Incident, Why: req.Why}
	switch req.Purpose {
	case View:
	case Download:
		r.Action = audit.ActionClipDownload
	default:
		return Grant{}, s.refuse(ctx, who, r, false, "purpose %q: must be view or download", req.Purpose)
	}
	sc, err := s.scope(ctx, who, access.ViewFootage, r)
	if err != nil {
		return Grant{}, err
	}
	c, err := s.clipFor(ctx, who, r, sc, req.Camera, req.Clip, req.Incident, req.Why)
	if err != nil {
		return Grant{}, err
	}
	g := Grant{Clip: c, Expires: s.cfg.Now().Add(s.cfg.LinkTTL)}
	g.URL, err = s.ev.Link(ctx, c.Camera, c.Clip, s.cfg.LinkTTL)
	if errors.Is(err, objstore.ErrNoPresign) {
		g.URL, err = s.localLink(c, who.Name, req.Purpose, g.Expires), nil
	}
	if err != nil {
		r.Outcome, r.Detail = audit.OutcomeError, err.Error()
		if aerr := s.record(ctx, who, r); aerr != nil {
			return Grant{}, aerr
		}
		return Grant{}, fmt.Errorf("governance: access %s/%s: %w", c.Camera, c.Clip, err)
	}
	r.Detail = fmt.Sprintf("%s link valid until %s", req.Purpose, g.Expires.UTC().Format(time.RFC3339))
	return g, s.record(ctx, who, r)
}

// clipFor finds a clip and checks the caller may act on it with scope sc:
// the justification, the incident (required and one of the clip's when it
// has any), assignment for an investigator, the wearer for a wearer. Each
// refusal is audited with r.
func (s *Service) clipFor(ctx context.Context, who Who, r audit.Record, sc access.Scope, camera, clip, incident, why string) (evidence.Clip, error) {
	c, err := s.ev.Get(ctx, camera, clip)
	if errors.Is(err, evidence.ErrNotFound) {
		return c, s.refuse(ctx, who, r, false, "no clip %s/%s", camera, clip)
	}
	if err != nil {
		return c, err
	}
	if err := s.needWhy(ctx, who, r, why, "justification"); err != nil {
		return c, err
	}
	switch {
	case len(c.Incidents) > 0 && incident == "":
		return c, s.refuse(ctx, who, r, false, "clip %s/%s is linked to incident %s: give the incident id", camera, clip, strings.Join(c.Incidents, ", "))
	case incident != "" && !slices.Contains(c.Incidents, incident):
		return c, s.refuse(ctx, who, r, false, "clip %s/%s is not linked to incident %s", camera, clip, incident)
	}
	switch sc {
	case access.ScopeOwn:
		if who.Wearer == "" || c.Wearer != who.Wearer {
			return c, s.refuse(ctx, who, r, true, "clip %s/%s is not %s's own footage", camera, clip, who.Name)
		}
	case access.ScopeAssigned:
		ok := false
		if incident != "" {
			if ok, err = s.assigned(ctx, incident, who.Name); err != nil {
				return c, err
			}
		}
		if !ok {
			return c, s.refuse(ctx, who, r, true, "clip %s/%s is not footage of an incident assigned to %s", camera, clip, who.Name)
		}
	}
	if c.Deleted() {
		return c, s.refuse(ctx, who, r, false, "clip %s/%s was deleted under the retention policy", camera, clip)
	}
	return c, nil
}

// linkClaims is what a local footage link carries.
type linkClaims struct {
	Camera  string `json:"c"`
	Clip    string `json:"k"`
	User    string `json:"u"`
	Purpose string `json:"p"`
	Expires int64  `json:"e"` // Unix seconds
}

// localLink signs a link to footage Vigil serves itself (a local directory
// store cannot presign). The key lives only in this process.
func (s *Service) localLink(c evidence.Clip, user, purpose string, expires time.Time) string {
	b, _ := json.Marshal(linkClaims{Camera: c.Camera, Clip: c.Clip, User: user, Purpose: purpose, Expires: expires.Unix()})
	m := hmac.New(sha256.New, s.linkKey)
	m.Write(b)
	return LinkPath + base64.RawURLEncoding.EncodeToString(b) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// LinkPath is where Vigil serves local footage links.
const LinkPath = "/api/footage/"

// ErrLink is returned for a footage link that is malformed, forged or expired.
var ErrLink = errors.New("governance: footage link invalid or expired")

// Fetch serves a local footage link: the clip's bytes, its record and the
// purpose the link was granted for. The fetch is audited.
func (s *Service) Fetch(ctx context.Context, token, from string) (io.ReadCloser, evidence.Clip, string, error) {
	payload, sig, ok := strings.Cut(token, ".")
	b, err1 := base64.RawURLEncoding.DecodeString(payload)
	got, err2 := base64.RawURLEncoding.DecodeString(sig)
	if !ok || err1 != nil || err2 != nil {
		return nil, evidence.Clip{}, "", ErrLink
	}
	m := hmac.New(sha256.New, s.linkKey)
	m.Write(b)
	var cl linkClaims
	if !hmac.Equal(m.Sum(nil), got) || json.NewDecoder(bytes.NewReader(b)).Decode(&cl) != nil || s.cfg.Now().Unix() > cl.Expires {
		return nil, evidence.Clip{}, "", ErrLink
	}
	c, err := s.ev.Get(ctx, cl.Camera, cl.Clip)
	if err != nil {
		return nil, c, "", err
	}
	rc, err := s.ev.Footage(ctx, cl.Camera, cl.Clip)
	if err != nil {
		return nil, c, "", err
	}
	who := Who{Principal: access.Principal{Name: cl.User}, From: from}
	if u, err := s.users.User(ctx, cl.User); err == nil {
		who.Role = u.Role
	}
	if err := s.record(ctx, who, audit.Record{Action: audit.ActionClipFetch, Camera: c.Camera, Clip: c.Clip,
		Detail: cl.Purpose + " link used"}); err != nil {
		rc.Close()
		return nil, c, "", err
	}
	return rc, c, cl.Purpose, nil
}
