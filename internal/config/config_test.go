package config

import (
	"strings"
	"testing"
)

func TestRedisReplicas(t *testing.T) {
	for _, c := range []struct {
		r    Redis
		want int
		bad  bool
	}{
		{Redis{WaitReplicas: "auto", Addrs: []string{"a:1"}}, 0, false},
		{Redis{WaitReplicas: "auto", Addrs: []string{"a:1", "b:1"}, MasterName: "m"}, 1, false},
		{Redis{WaitReplicas: "", MasterName: "m"}, 1, false},
		{Redis{WaitReplicas: "0", MasterName: "m"}, 0, false},
		{Redis{WaitReplicas: "2"}, 2, false},
		{Redis{WaitReplicas: "-1"}, 0, true},
		{Redis{WaitReplicas: "two"}, 0, true},
	} {
		got, err := c.r.Replicas()
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("%+v: %d, %v; want %d (error: %v)", c.r, got, err, c.want, c.bad)
		}
		if err != nil && !strings.Contains(err.Error(), "REDIS_WAIT_REPLICAS") {
			t.Errorf("error %q does not name the variable", err)
		}
	}
}
