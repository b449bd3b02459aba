package synapsetest

import (
	"fmt"
	"sync"
	"time"
)

// throttle is the service's per-user limit (UserConcurrentConnectionThrottler
// and UserThrottleFilter): a few requests in flight, and a count per fixed
// 60-second window that starts with the first request after the last window
// ended (MemoryTimeBlockCountingSemaphoreImpl): once the count is spent,
// everything is refused until the window ends. Excess is answered 429 at
// once, never queued.
type throttle struct {
	mu         sync.Mutex
	concurrent int // 0: no limit
	perMinute  int // 0: no limit
	users      map[int64]*userLoad
}

type userLoad struct {
	inFlight    int
	windowStart time.Time
	inWindow    int
}

const throttleWindow = 60 * time.Second

func newThrottle(concurrent, perMinute int) *throttle {
	if concurrent == 0 {
		concurrent = 3
	}
	if perMinute == 0 {
		perMinute = 600
	}
	return &throttle{concurrent: concurrent, perMinute: perMinute, users: map[int64]*userLoad{}}
}

func (t *throttle) set(concurrent, perMinute int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.concurrent, t.perMinute = concurrent, perMinute
	t.users = map[int64]*userLoad{}
}

// enter admits a request of uid, or returns the 429 reason. release must be
// called when the request ends.
func (t *throttle) enter(uid int64) (release func(), reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.users[uid]
	if u == nil {
		u = &userLoad{}
		t.users[uid] = u
	}
	if t.concurrent > 0 && u.inFlight >= t.concurrent {
		return nil, fmt.Sprintf("Too many concurrent requests. Allowed %d concurrent connections at any time.", t.concurrent)
	}
	if now := time.Now(); now.Sub(u.windowStart) >= throttleWindow {
		u.windowStart, u.inWindow = now, 0
	}
	if t.perMinute > 0 && u.inWindow >= t.perMinute {
		return nil, fmt.Sprintf("Requests are too frequent. Allowed %d requests every 60 seconds.", t.perMinute)
	}
	u.inWindow++
	u.inFlight++
	return func() {
		t.mu.Lock()
		u.inFlight--
		t.mu.Unlock()
	}, ""
}
