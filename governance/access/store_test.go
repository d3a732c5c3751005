package access

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cheap keeps argon2id fast in tests; TestHashFormatAndVerify covers the
// real parameters.
var cheap = HashParams{Memory: 64, Time: 1, Threads: 1}

func openDB(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := OpenDB(filepath.Join(dir, DBFile))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func newStore(t *testing.T, opts Options) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	if opts.Hash == (HashParams{}) {
		opts.Hash = cheap
	}
	s, err := Open(context.Background(), openDB(t, dir), opts)
	require.NoError(t, err)
	return s, dir
}

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

const goodPW = "a long enough passphrase"

func TestAddUserValidates(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, Options{})
	require.NoError(t, s.AddUser(ctx, User{Name: "Nurse A", Role: Wearer, Wearer: "Nurse A"}, t0))
	require.NoError(t, s.AddUser(ctx, User{Name: "Ines", Role: Investigator}, t0))

	for _, tc := range []struct {
		name string
		u    User
		err  error
		msg  string
	}{
		{"bad name", User{Name: "a/b", Role: Operator}, ErrInvalid, "name"},
		{"empty name", User{Name: "", Role: Operator}, ErrInvalid, "1-64"},
		{"bad role", User{Name: "x", Role: "root"}, ErrInvalid, `role "root": must be one of operator, supervisor, investigator, ig_officer, admin, wearer`},
		{"wearer needs a wearer", User{Name: "x", Role: Wearer}, ErrInvalid, "wearer user needs"},
		{"only wearers have one", User{Name: "x", Role: Admin, Wearer: "W"}, ErrInvalid, "only a wearer user"},
		{"wearer spaces", User{Name: "x", Role: Wearer, Wearer: " W"}, ErrInvalid, "leading or trailing"},
		{"duplicate", User{Name: "ines", Role: Operator}, ErrExists, "Ines"},
		{"wearer linked twice", User{Name: "y", Role: Wearer, Wearer: "nurse a"}, ErrInvalid, "already linked to user Nurse A"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.AddUser(ctx, tc.u, t0)
			require.ErrorIs(t, err, tc.err)
			assert.ErrorContains(t, err, tc.msg)
		})
	}

	list, err := s.Users(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, User{Name: "Ines", Role: Investigator, Created: t0}, list[0])
	u, err := s.User(ctx, "NURSE A")
	require.NoError(t, err)
	assert.Equal(t, "Nurse A", u.Name, "looked up case-insensitively, stored as given")
	assert.Equal(t, "Nurse A", u.Wearer)
	_, err = s.User(ctx, "nobody")
	require.ErrorIs(t, err, ErrNoUser)
}

func TestLoginAndSession(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, Options{})
	require.NoError(t, s.AddUser(ctx, User{Name: "Nurse A", Role: Wearer, Wearer: "Nurse A (community)"}, t0))

	_, _, err := s.Login(ctx, "Nurse A", goodPW, t0)
	require.ErrorIs(t, err, ErrLoginFailed, "no password set yet")
	require.ErrorIs(t, s.SetPassword(ctx, "Nurse A", "too short"), ErrInvalid)
	require.ErrorIs(t, s.SetPassword(ctx, "nobody", goodPW), ErrNoUser)
	require.NoError(t, s.SetPassword(ctx, "nurse a", goodPW))
	u, err := s.User(ctx, "Nurse A")
	require.NoError(t, err)
	assert.True(t, u.HasPassword)

	_, _, err = s.Login(ctx, "Nurse A", goodPW+"!", t0)
	require.ErrorIs(t, err, ErrLoginFailed)
	_, _, err = s.Login(ctx, "Nobody", goodPW, t0)
	require.ErrorIs(t, err, ErrLoginFailed, "unknown users get the same answer")
	_, _, err = s.Login(ctx, "bad/name", goodPW, t0)
	require.ErrorIs(t, err, ErrLoginFailed)

	secret, p, err := s.Login(ctx, "NURSE A", goodPW, t0)
	require.NoError(t, err)
	assert.Len(t, secret, 43, "32 random bytes, base64url")
	want := Principal{Name: "Nurse A", Role: Wearer, Wearer: "Nurse A (community)", Via: ViaSession}
	assert.Equal(t, want, p)
	got, err := s.Session(ctx, secret, t0.Add(time.Minute))
	require.NoError(t, err)
	assert.Equal(t, want, got)

	_, err = s.Session(ctx, secret[:42]+"x", t0)
	require.ErrorIs(t, err, ErrNoSession)
	_, err = s.Session(ctx, "short", t0)
	require.ErrorIs(t, err, ErrNoSession)

	require.NoError(t, s.Logout(ctx, secret))
	_, err = s.Session(ctx, secret, t0.Add(time.Minute))
	require.ErrorIs(t, err, ErrNoSession)
	require.NoError(t, s.Logout(ctx, secret), "logging out twice is fine")

	// A new password ends the sessions opened with the old one.
	secret, _, err = s.Login(ctx, "Nurse A", goodPW, t0)
	require.NoError(t, err)
	require.NoError(t, s.SetPassword(ctx, "Nurse A", "another long passphrase"))
	_, err = s.Session(ctx, secret, t0)
	require.ErrorIs(t, err, ErrNoSession)
	_, _, err = s.Login(ctx, "Nurse A", goodPW, t0)
	require.ErrorIs(t, err, ErrLoginFailed)
}

func TestLockout(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	s, _ := newStore(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, s.AddUser(ctx, User{Name: "op", Role: Operator}, t0))
	require.NoError(t, s.SetPassword(ctx, "op", goodPW))
	login := func(pw string, at time.Time) error {
		_, _, err := s.Login(ctx, "op", pw, at)
		return err
	}

	// Four failures, then success: the count starts again.
	for i := range 4 {
		require.ErrorIs(t, login("wrong password!", t0.Add(time.Duration(i)*time.Second)), ErrLoginFailed)
	}
	require.NoError(t, login(goodPW, t0.Add(5*time.Second)))

	// Failures spread beyond the window do not add up.
	for i := range 4 {
		require.ErrorIs(t, login("wrong password!", t0.Add(time.Minute+time.Duration(i)*time.Second)), ErrLoginFailed)
	}
	late := t0.Add(time.Minute + 16*time.Minute)
	require.ErrorIs(t, login("wrong password!", late), ErrLoginFailed, "the first four are older than 15 minutes")

	// Five within the window lock the name out: the fifth says so.
	base := t0.Add(time.Hour)
	for i := range 4 {
		require.ErrorIs(t, login("wrong password!", base.Add(time.Duration(i)*time.Minute)), ErrLoginFailed)
	}
	lockAt := base.Add(4 * time.Minute)
	err := login("wrong password!", lockAt)
	require.ErrorIs(t, err, ErrLockedOut)
	var lo *LockedOutError
	require.ErrorAs(t, err, &lo)
	assert.Equal(t, lockAt.Add(15*time.Minute).UnixNano(), lo.Until.UnixNano())
	assert.Contains(t, err.Error(), "try again after 10:19:00 UTC")
	assert.Contains(t, logs.String(), "logins locked out")

	// Even the right password is refused while locked, and by any spelling.
	err = login(goodPW, lockAt.Add(time.Minute))
	require.ErrorIs(t, err, ErrLockedOut)
	_, _, err = s.Login(ctx, "OP", goodPW, lockAt.Add(14*time.Minute))
	require.ErrorIs(t, err, ErrLockedOut)

	// 15 minutes on, the right password works.
	require.NoError(t, login(goodPW, lockAt.Add(15*time.Minute)))

	// Names that are not users lock out the same way.
	for i := range 5 {
		_, _, err = s.Login(ctx, "ghost", "wrong password!", base.Add(time.Duration(i)*time.Second))
	}
	require.ErrorIs(t, err, ErrLockedOut)
}

func TestDisabledUserCannotAuthenticate(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, Options{})
	require.NoError(t, s.AddUser(ctx, User{Name: "sup", Role: Supervisor}, t0))
	require.NoError(t, s.SetPassword(ctx, "sup", goodPW))
	token, _, err := s.CreateToken(ctx, "sup", t0)
	require.NoError(t, err)
	session, _, err := s.Login(ctx, "sup", goodPW, t0)
	require.NoError(t, err)

	require.NoError(t, s.Disable(ctx, "SUP", t0))
	require.ErrorIs(t, s.Disable(ctx, "nobody", t0), ErrNoUser)
	u, err := s.User(ctx, "sup")
	require.NoError(t, err)
	assert.True(t, u.Disabled)

	_, err = s.Authenticate(ctx, token)
	require.ErrorIs(t, err, ErrDisabled)
	_, err = s.Session(ctx, session, t0)
	require.ErrorIs(t, err, ErrNoSession)
	_, _, err = s.Login(ctx, "sup", goodPW, t0)
	require.ErrorIs(t, err, ErrDisabled)
	_, _, err = s.Login(ctx, "sup", "wrong password!", t0)
	require.ErrorIs(t, err, ErrLoginFailed, "disabled is only told to someone with the password")
	_, _, err = s.CreateToken(ctx, "sup", t0)
	require.ErrorIs(t, err, ErrDisabled)

	require.NoError(t, s.Enable(ctx, "sup"))
	_, err = s.Authenticate(ctx, token)
	require.NoError(t, err, "tokens survive a disable")
	_, err = s.Session(ctx, session, t0)
	require.ErrorIs(t, err, ErrNoSession, "sessions do not")
	_, _, err = s.Login(ctx, "sup", goodPW, t0)
	require.NoError(t, err)
}

// readRaw returns every byte of the database files (the WAL too).
func readRaw(t *testing.T, dir string) string {
	t.Helper()
	var all []byte
	files, err := filepath.Glob(filepath.Join(dir, DBFile+"*"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		all = append(all, b...)
	}
	return string(all)
}

func TestTokensShownOnceStoredHashed(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t, Options{})
	require.NoError(t, s.AddUser(ctx, User{Name: "Operator 7", Role: Operator}, t0))
	require.NoError(t, s.SetPassword(ctx, "Operator 7", goodPW))
	secret, tok, err := s.CreateToken(ctx, "operator 7", t0)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(secret, "vgl_"))
	assert.Len(t, secret, 4+32)
	assert.Len(t, tok.ID, 12)
	assert.Equal(t, Token{ID: tok.ID, User: "Operator 7", Role: Operator, Created: t0}, tok)
	session, _, err := s.Login(ctx, "Operator 7", goodPW, t0)
	require.NoError(t, err)

	// Another connection (the gateway, while the CLI writes) sees it at once.
	other, err := Open(ctx, openDB(t, dir), Options{Hash: cheap})
	require.NoError(t, err)
	p, err := other.Authenticate(ctx, secret)
	require.NoError(t, err)
	assert.Equal(t, Principal{Name: "Operator 7", Role: Operator, Via: ViaToken, TokenID: tok.ID}, p)

	for _, bad := range []string{secret + "x", "Bearer " + secret, "vgl_nope", ""} {
		_, err = s.Authenticate(ctx, bad)
		require.ErrorIs(t, err, ErrUnknown, bad)
	}

	list, err := s.Tokens(ctx)
	require.NoError(t, err)
	assert.Equal(t, []Token{tok}, list)
	u, err := s.User(ctx, "Operator 7")
	require.NoError(t, err)
	assert.Equal(t, 1, u.Tokens)

	raw := readRaw(t, dir)
	assert.Contains(t, raw, hash(secret), "the hash is what is stored")
	assert.NotContains(t, raw, secret, "the token secret is never stored")
	assert.NotContains(t, raw, session, "nor the session secret")
	assert.NotContains(t, raw, goodPW, "nor the password")
	st, err := os.Stat(filepath.Join(dir, DBFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	require.ErrorIs(t, s.RevokeToken(ctx, "nope"), ErrNoToken)
	require.NoError(t, s.RevokeToken(ctx, tok.ID))
	_, err = other.Authenticate(ctx, secret)
	require.ErrorIs(t, err, ErrUnknown, "revoked for everyone at once")

	_, _, err = s.CreateToken(ctx, "nobody", t0)
	require.ErrorIs(t, err, ErrNoUser)
}

func TestSessionExpiry(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, Options{})
	require.NoError(t, s.AddUser(ctx, User{Name: "ig", Role: IGOfficer}, t0))
	require.NoError(t, s.SetPassword(ctx, "ig", goodPW))

	t.Run("idle", func(t *testing.T) {
		secret, _, err := s.Login(ctx, "ig", goodPW, t0)
		require.NoError(t, err)
		at := t0
		for range 5 { // each use slides the idle timeout
			at = at.Add(29 * time.Minute)
			_, err = s.Session(ctx, secret, at)
			require.NoError(t, err, at)
		}
		_, err = s.Session(ctx, secret, at.Add(30*time.Minute))
		require.ErrorIs(t, err, ErrNoSession)
		_, err = s.Session(ctx, secret, at.Add(time.Minute))
		require.ErrorIs(t, err, ErrNoSession, "an expired session is gone for good")
	})
	t.Run("absolute", func(t *testing.T) {
		secret, _, err := s.Login(ctx, "ig", goodPW, t0)
		require.NoError(t, err)
		at := t0
		for at.Add(20 * time.Minute).Before(t0.Add(12 * time.Hour)) {
			at = at.Add(20 * time.Minute)
			_, err = s.Session(ctx, secret, at)
			require.NoError(t, err, at)
		}
		_, err = s.Session(ctx, secret, t0.Add(12*time.Hour))
		require.ErrorIs(t, err, ErrNoSession, "12 h after login, however busy")
	})
	t.Run("configurable", func(t *testing.T) {
		short, _ := newStore(t, Options{SessionIdle: time.Minute, SessionMax: 3 * time.Minute})
		require.NoError(t, short.AddUser(ctx, User{Name: "ig", Role: IGOfficer}, t0))
		require.NoError(t, short.SetPassword(ctx, "ig", goodPW))
		secret, _, err := short.Login(ctx, "ig", goodPW, t0)
		require.NoError(t, err)
		_, err = short.Session(ctx, secret, t0.Add(50*time.Second))
		require.NoError(t, err)
		_, err = short.Session(ctx, secret, t0.Add(50*time.Second+time.Minute))
		require.ErrorIs(t, err, ErrNoSession)
	})
}

func TestRehashOnLogin(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t, Options{})
	require.NoError(t, s.AddUser(ctx, User{Name: "a", Role: Admin}, t0))
	require.NoError(t, s.SetPassword(ctx, "a", goodPW))
	stronger := HashParams{Memory: 128, Time: 2, Threads: 1}
	db := openDB(t, dir)
	s2, err := Open(ctx, db, Options{Hash: stronger})
	require.NoError(t, err)
	_, _, err = s2.Login(ctx, "a", goodPW, t0)
	require.NoError(t, err)
	var phc string
	require.NoError(t, db.QueryRow(`SELECT password FROM access_users WHERE name = 'a'`).Scan(&phc))
	assert.Contains(t, phc, "$m=128,t=2,p=1$")
	_, _, err = s.Login(ctx, "a", goodPW, t0)
	require.NoError(t, err, "the new hash still verifies")
}

func TestLegacyTokensImport(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	legacy := filepath.Join(dir, "tokens.json")
	secrets := []string{"vgl_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "vgl_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
		"vgl_cccccccccccccccccccccccccccccccc", "vgl_dddddddddddddddddddddddddddddddd", "vgl_eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"}
	type tok struct {
		ID      string    `json:"id"`
		Name    string    `json:"name"`
		Role    Role      `json:"role"`
		Hash    string    `json:"sha256"`
		Created time.Time `json:"created"`
	}
	var toks []tok
	for i, e := range []struct {
		name string
		role Role
	}{
		{"Operator 7", Operator},
		{"Operator 7", Operator}, // a second token for the same person
		{"ops", Supervisor},
		{"ops", Admin}, // same name, other role
		{"ARC link/script: nightly", Admin},
	} {
		h := hash(secrets[i])
		toks = append(toks, tok{ID: h[:12], Name: e.name, Role: e.role, Hash: h, Created: t0.Add(time.Duration(i) * time.Minute)})
	}
	b, err := json.Marshal(map[string]any{"tokens": toks})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(legacy, b, 0o600))

	var logs bytes.Buffer
	db := openDB(t, dir)
	s, err := Open(ctx, db, Options{LegacyTokens: legacy, Hash: cheap, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	assert.Contains(t, logs.String(), "imported API tokens from a legacy token file")
	assert.Contains(t, logs.String(), "tokens=5")
	assert.NoFileExists(t, legacy)
	assert.FileExists(t, legacy+".imported")

	want := map[string]Principal{
		secrets[0]: {Name: "Operator 7", Role: Operator},
		secrets[1]: {Name: "Operator 7", Role: Operator},
		secrets[2]: {Name: "ops", Role: Supervisor},
		secrets[3]: {Name: "ops-admin", Role: Admin},
		secrets[4]: {Name: "ARC link_script_ nightly", Role: Admin},
	}
	check := func(s *Store) {
		t.Helper()
		for secret, w := range want {
			p, err := s.Authenticate(ctx, secret)
			require.NoError(t, err, "old secrets keep working")
			assert.Equal(t, w.Name, p.Name)
			assert.Equal(t, w.Role, p.Role)
		}
		users, err := s.Users(ctx)
		require.NoError(t, err)
		assert.Len(t, users, 4)
		list, err := s.Tokens(ctx)
		require.NoError(t, err)
		assert.Len(t, list, 5)
	}
	check(s)
	u, err := s.User(ctx, "Operator 7")
	require.NoError(t, err)
	assert.Equal(t, t0, u.Created)
	assert.Equal(t, 2, u.Tokens)

	// A crash between commit and rename imports again: nothing doubles.
	require.NoError(t, os.Rename(legacy+".imported", legacy))
	s, err = Open(ctx, db, Options{LegacyTokens: legacy, Hash: cheap})
	require.NoError(t, err)
	check(s)
	assert.NoFileExists(t, legacy)

	// Without the file, opening does nothing more.
	s, err = Open(ctx, db, Options{LegacyTokens: legacy, Hash: cheap})
	require.NoError(t, err)
	check(s)

	// A file that is not a token file stops the open, naming it.
	require.NoError(t, os.WriteFile(legacy, []byte("{nonsense"), 0o600))
	_, err = Open(ctx, db, Options{LegacyTokens: legacy, Hash: cheap})
	require.ErrorContains(t, err, "tokens.json is not a token file")
}

func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, Options{})
	require.NoError(t, s.AddUser(ctx, User{Name: "op", Role: Operator}, t0))
	require.NoError(t, s.SetPassword(ctx, "op", goodPW))
	secret, _, err := s.CreateToken(ctx, "op", t0)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 10 {
				_, err := s.Authenticate(ctx, secret)
				assert.NoError(t, err)
			}
			sess, _, err := s.Login(ctx, "op", goodPW, t0.Add(time.Duration(i)*time.Second))
			if assert.NoError(t, err) {
				_, err = s.Session(ctx, sess, t0.Add(time.Minute))
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
}
