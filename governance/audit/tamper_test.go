package audit

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tamperFixture is a trail of 25 records: 1–10 and 11–20 sealed and stored,
// 21–25 not yet sealed.
func tamperFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.appendN(0, 20)
	require.NoError(t, f.l.Seal(f.ctx))
	f.appendN(20, 5)
	rep := f.verify()
	require.True(t, rep.OK(), rep.String())
	require.Equal(t, 2, rep.Seals)
	require.Equal(t, 5, rep.Unsealed)
	return f
}

// assertNames checks that Verify fails and that each wanted phrase appears
// in one of its problems.
func assertNames(t *testing.T, rep Report, want ...string) {
	t.Helper()
	t.Log(rep.String())
	require.False(t, rep.OK(), "Verify must fail: %s", rep.String())
	for _, w := range want {
		ok := slices.ContainsFunc(rep.Problems, func(p string) bool { return strings.Contains(p, w) })
		assert.True(t, ok, "no problem mentions %q:\n%s", w, rep.String())
	}
}

// TestVerifyCatchesDirectSQL attacks the database file with plain SQL, as
// someone with write access but no interest in the hash format would.
func TestVerifyCatchesDirectSQL(t *testing.T) {
	tests := []struct {
		name   string
		attack func(f *fixture)
		want   []string
	}{
		{"edit a sealed record", func(f *fixture) {
			f.exec(`UPDATE audit_records SET why = 'routine check' WHERE seq = 7`)
		}, []string{"record 7 edited"}},
		{"edit an unsealed record", func(f *fixture) {
			f.exec(`UPDATE audit_records SET actor = 'nobody' WHERE seq = 23`)
		}, []string{"record 23 (not yet sealed) edited or forged"}},
		{"edit a record's time", func(f *fixture) {
			f.exec(`UPDATE audit_records SET at_ms = at_ms - 3600000 WHERE seq = 14`)
		}, []string{"record 14 edited"}},
		{"replace a stored hash", func(f *fixture) {
			f.exec(`UPDATE audit_records SET hash = (SELECT hash FROM audit_records WHERE seq = 2) WHERE seq = 5`)
		}, []string{"record 5: the stored hash or link was altered"}},
		{"delete a sealed record", func(f *fixture) {
			f.exec(`DELETE FROM audit_records WHERE seq = 12`)
		}, []string{"record 12 deleted: sealed, but missing"}},
		{"delete sealed records", func(f *fixture) {
			f.exec(`DELETE FROM audit_records WHERE seq BETWEEN 4 AND 6`)
		}, []string{"records 4–6 deleted"}},
		{"delete an unsealed record", func(f *fixture) {
			f.exec(`DELETE FROM audit_records WHERE seq = 23`)
		}, []string{"record 23 deleted (not yet sealed)"}},
		{"insert a forged record after the last", func(f *fixture) {
			var prev string
			require.NoError(f.t, f.db.QueryRow(`SELECT hash FROM audit_records WHERE seq = 25`).Scan(&prev))
			f.exec(`INSERT INTO audit_records (`+recordColumns+`) VALUES (26, 0, 'mallory', 'admin', 'clip.view', 'cam-1', 'c3', '', '', 'x', '', 'ok', '', ?, ?)`,
				prev, strings.Repeat("ab", 32))
		}, []string{"record 26 (not yet sealed) edited or forged"}},
		{"insert a forged record before the first", func(f *fixture) {
			r := rec(99)
			r.Seq, r.At = 0, t0
			r.Hash = r.ComputeHash()
			f.exec(`INSERT INTO audit_records (`+recordColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				r.Seq, r.At.UnixMilli(), r.Actor, r.Role, r.Action, r.Camera, r.Clip, r.Incident, r.Release,
				r.Why, r.From, r.Outcome, r.Detail, r.Prev, r.Hash)
		}, []string{"inserted at the start of the log (it is now seq 0)"}},
		{"swap two sealed records", func(f *fixture) {
			f.exec(`UPDATE audit_records SET seq = -1 WHERE seq = 3`)
			f.exec(`UPDATE audit_records SET seq = 3 WHERE seq = 4`)
			f.exec(`UPDATE audit_records SET seq = 4 WHERE seq = -1`)
		}, []string{"records 3 and 4 reordered"}},
		{"swap two unsealed records", func(f *fixture) {
			f.exec(`UPDATE audit_records SET seq = -1 WHERE seq = 22`)
			f.exec(`UPDATE audit_records SET seq = 22 WHERE seq = 23`)
			f.exec(`UPDATE audit_records SET seq = 23 WHERE seq = -1`)
		}, []string{"records 22 and 23 (unsealed) reordered"}},
		{"truncate the tail", func(f *fixture) {
			f.exec(`DELETE FROM audit_records WHERE seq >= 16`)
		}, []string{"records 16–20 deleted: the log ends at record 15, but the seals cover up to record 20"}},
		{"truncate everything", func(f *fixture) {
			f.exec(`DELETE FROM audit_records`)
		}, []string{"records 1–20 deleted: the log is empty"}},
		{"delete the end of the sealed range, keep the unsealed", func(f *fixture) {
			f.exec(`DELETE FROM audit_records WHERE seq BETWEEN 18 AND 20`)
		}, []string{"records 18–20 deleted"}},
		{"delete a local seal", func(f *fixture) {
			f.exec(`DELETE FROM audit_seals WHERE last = 10`)
		}, []string{"the seal of records 1–10 is in the store but missing from the local database"}},
		{"edit a local seal", func(f *fixture) {
			f.exec(`UPDATE audit_seals SET note = replace(note, 'count 20', 'count 21') WHERE last = 20`)
		}, []string{"the local copy of the seal of records 11–20 differs from the stored copy"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tamperFixture(t)
			tc.attack(f)
			rep := f.verify()
			assertNames(t, rep, tc.want...)
		})
	}
}

// TestVerifyCatchesRewrittenChain attacks the database as someone who knows
// the hash format: after the change they renumber every row and recompute
// every prev and hash with the package's own functions, so the local chain
// is perfect. Only the stored seals can tell, and Verify must still name the
// record.
func TestVerifyCatchesRewrittenChain(t *testing.T) {
	tests := []struct {
		name   string
		change func(recs []Record) []Record
		extra  func(f *fixture)
		want   []string
	}{
		{"edit", func(recs []Record) []Record {
			recs[6].Why = "routine check"
			return recs
		}, nil, []string{"record 7 edited", "records 8–20: content intact but hashes recomputed"}},
		{"delete", func(recs []Record) []Record {
			return slices.Delete(recs, 11, 12)
		}, nil, []string{"record 12 deleted", "records 13–20 renumbered (now records 12–19) and their hashes recomputed"}},
		{"delete several", func(recs []Record) []Record {
			return slices.Delete(recs, 4, 9)
		}, nil, []string{"records 5–9 deleted"}},
		{"insert", func(recs []Record) []Record {
			forged := recs[14]
			forged.Actor, forged.Clip, forged.Why = "mallory", "c3", "nothing to see"
			return slices.Insert(recs, 15, forged)
		}, nil, []string{"a record that is in no seal was inserted after record 15 (it is now seq 16)"}},
		{"reorder", func(recs []Record) []Record {
			recs[2], recs[3] = recs[3], recs[2]
			return recs
		}, nil, []string{"records 3 and 4 reordered"}},
		{"move far", func(recs []Record) []Record {
			r := recs[2]
			recs = slices.Delete(recs, 2, 3)
			return slices.Insert(recs, 14, r)
		}, nil, []string{"record 3 moved"}},
		{"truncate", func(recs []Record) []Record {
			return recs[:15]
		}, nil, []string{"records 16–20 deleted: the log ends at record 15"}},
		{"delete the end of the sealed range and renumber the rest", func(recs []Record) []Record {
			return slices.Delete(recs, 17, 20)
		}, nil, []string{"records 18–20 deleted"}},
		{"delete and wipe the local seals", func(recs []Record) []Record {
			return slices.Delete(recs, 11, 12)
		}, func(f *fixture) {
			f.exec(`DELETE FROM audit_seals`)
		}, []string{"record 12 deleted", "the seal of records 1–10 is in the store but missing from the local database"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tamperFixture(t)
			f.forge(tc.change(f.all()))
			if tc.extra != nil {
				tc.extra(f)
			}
			// The forgery is perfect as far as the chain goes.
			recs := f.all()
			for i, r := range recs {
				require.Equal(t, int64(i+1), r.Seq)
				require.Equal(t, r.ComputeHash(), r.Hash)
			}
			rep := f.verify()
			assertNames(t, rep, tc.want...)
		})
	}
}

// TestVerifyLocalSealsOnlyStillCatchRewrite: without a store the local seals
// are the reference; a rewrite of the records alone is still caught, and
// Verify warns that the seals themselves are unprotected.
func TestVerifyLocalSealsOnlyStillCatchRewrite(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Store = nil })
	f.appendN(0, 20)
	recs := f.all()
	f.forge(slices.Delete(recs, 11, 12))
	rep := f.verify()
	assertNames(t, rep, "record 12 deleted")
	assert.True(t, slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, "no seal store is configured") }))
}
