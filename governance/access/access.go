// Package access decides who may do what through Vigil's API. People and
// systems hold API tokens, each with a role; a token is shown once when it is
// created and stored only as a SHA-256 hash, so a copy of the state directory
// does not let anyone in.
//
// Tokens live in a small JSON file in the state directory so that `vigil
// token create` works while the gateway runs; the gateway re-reads the file
// when it changes.
package access

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigil-gw/vigil/governance/internal/atomicfile"
)

// Role is what a token holder is trusted with. Each role includes the ones
// before it.
type Role string

// Roles, least to most trusted.
const (
	Operator   Role = "operator"   // control-room staff: see and act on alerts
	Supervisor Role = "supervisor" // team leads: also devices, quarantine, routes
	Admin      Role = "admin"      // the gateway's administrators: everything
)

var ranks = map[Role]int{Operator: 1, Supervisor: 2, Admin: 3}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return ranks[r] > 0 }

// Permission is one thing the API lets a caller do.
type Permission string

// Permissions, each granted from a minimum role.
const (
	ReadAlerts   Permission = "read_alerts"
	ActOnAlerts  Permission = "act_on_alerts" // acknowledge, note, resolve
	ReadDevices  Permission = "read_devices"
	ReadRejected Permission = "read_rejected" // quarantined messages may hold device payloads
	ReadRoutes   Permission = "read_routes"
	// ReadEvidenceStatus shows the footage backlog and checkpoints: counts,
	// never footage or who is in it.
	ReadEvidenceStatus Permission = "read_evidence_status"
)

var minimum = map[Permission]Role{
	ReadAlerts: Operator, ActOnAlerts: Operator,
	ReadDevices: Supervisor, ReadRejected: Supervisor, ReadRoutes: Supervisor, ReadEvidenceStatus: Supervisor,
}

// Allows reports whether role r grants p. Unknown permissions are refused.
func (r Role) Allows(p Permission) bool {
	need, ok := minimum[p]
	return ok && ranks[r] >= ranks[need]
}

// Token is a stored token: never the secret itself.
type Token struct {
	ID      string    `json:"id"` // first characters of the hash: safe to show and log
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	Hash    string    `json:"sha256"`
	Created time.Time `json:"created"`
}

// ErrUnknown is returned when a presented token matches none stored.
var ErrUnknown = errors.New("access: unknown or revoked token")

// tokenPrefix marks Vigil tokens so secret scanners can find leaked ones.
const tokenPrefix = "vgl_"

type file struct {
	Tokens []Token `json:"tokens"`
}

// Store is the token file.
type Store struct {
	path string

	mu     sync.Mutex
	mod    time.Time
	size   int64
	tokens []Token
}

// Open returns the token store at path (created on first Create).
func Open(path string) *Store { return &Store{path: path} }

func hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Create makes a token for name with role, stores its hash and returns the
// secret, which is not kept anywhere.
func (s *Store) Create(name string, role Role, now time.Time) (string, Token, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 128 {
		return "", Token{}, errors.New("access: name: must be 1-128 characters (the person or system the token is for)")
	}
	if !role.Valid() {
		return "", Token{}, fmt.Errorf("access: role %q: must be operator, supervisor or admin", role)
	}
	raw := make([]byte, 20)
	if _, err := rand.Read(raw); err != nil {
		return "", Token{}, fmt.Errorf("access: %w", err)
	}
	secret := tokenPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw))
	h := hash(secret)
	t := Token{ID: h[:12], Name: name, Role: role, Hash: h, Created: now.UTC()}
	unlock, err := s.lock()
	if err != nil {
		return "", Token{}, err
	}
	defer unlock()
	f, err := s.read()
	if err != nil {
		return "", Token{}, err
	}
	f.Tokens = append(f.Tokens, t)
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return "", Token{}, fmt.Errorf("access: encode: %w", err)
	}
	if err := atomicfile.Write(s.path, append(b, '\n'), 0o600); err != nil {
		return "", Token{}, fmt.Errorf("access: %w", err)
	}
	return secret, t, nil
}

// List returns the stored tokens (hashes, never secrets).
func (s *Store) List() ([]Token, error) {
	f, err := s.read()
	return f.Tokens, err
}

// Authenticate returns the token whose secret was presented.
func (s *Store) Authenticate(secret string) (Token, error) {
	if !strings.HasPrefix(secret, tokenPrefix) {
		return Token{}, ErrUnknown
	}
	tokens, err := s.current()
	if err != nil {
		return Token{}, err
	}
	h := []byte(hash(secret))
	for _, t := range tokens {
		if subtle.ConstantTimeCompare(h, []byte(t.Hash)) == 1 {
			return t, nil
		}
	}
	return Token{}, ErrUnknown
}

// current returns the tokens, re-reading the file if it changed on disk.
func (s *Store) current() ([]Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := os.Stat(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	if s.tokens == nil || !st.ModTime().Equal(s.mod) || st.Size() != s.size {
		f, err := s.read()
		if err != nil {
			return nil, err
		}
		s.tokens, s.mod, s.size = slices.Clone(f.Tokens), st.ModTime(), st.Size()
	}
	return s.tokens, nil
}

func (s *Store) read() (file, error) {
	var f file
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("access: %w", err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("access: %s is not a token file: %w", s.path, err)
	}
	return f, nil
}

func (s *Store) lock() (func(), error) {
	unlock, err := atomicfile.Lock(s.path)
	if err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	return unlock, nil
}
