package ratelog

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestOncePerPeriodPerKey(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	l := New(time.Minute, func() time.Time { return now })
	assert.True(t, l.Allow("btn-1"))
	assert.False(t, l.Allow("btn-1"))
	assert.True(t, l.Allow("btn-2"), "keys are independent")
	now = now.Add(59 * time.Second)
	assert.False(t, l.Allow("btn-1"))
	now = now.Add(time.Second)
	assert.True(t, l.Allow("btn-1"))
}

func TestMemoryIsBounded(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	l := New(time.Minute, func() time.Time { return now })
	for i := range maxKeys + 10 {
		l.Allow(string(rune(i)))
	}
	now = now.Add(time.Hour)
	l.Allow("new")
	assert.Len(t, l.last, 1, "expired keys are dropped once the map is full")
}
