package jobenv

import (
	"reflect"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDetect(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		ok      bool
		want    Job
		wantErr string
	}{
		{name: "nothing", env: map[string]string{"HOME": "/root"}},
		{
			name: "strand launcher",
			env: map[string]string{Coordinator: "127.0.0.1:4000", Token: "t", Rank: "3", LocalRank: "1", NodeRank: "1",
				WorldSize: "4", Mesh: "1,2,2", JobID: "j1", Transport: "tcp"},
			ok: true,
			want: Job{Source: "strand", Coordinator: "127.0.0.1:4000", Token: "t", JobID: "j1", Rank: 3, LocalRank: 1, NodeRank: 1,
				World: 4, DP: 1, TP: 2, PP: 2, Transport: "tcp"},
		},
		{
			name: "strand launcher after an elastic restart",
			env:  map[string]string{Coordinator: "127.0.0.1:4000", LocalRank: "0", Rank: "0", WorldSize: "2", Epoch: "2"},
			ok:   true,
			want: Job{Source: "strand", Coordinator: "127.0.0.1:4000", JobID: "strand", LocalRank: 0, NodeRank: -1, World: 2, Epoch: 2},
		},
		{
			name:    "bad epoch",
			env:     map[string]string{Coordinator: "127.0.0.1:4000", LocalRank: "0", WorldSize: "2", Epoch: "-1"},
			ok:      true,
			wantErr: "STRAND_EPOCH",
		},
		{
			name: "srun task",
			env: map[string]string{"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
				"SLURM_NODELIST": "node[07-08]", "SLURM_JOB_ID": "12", "SLURM_STEP_ID": "0", Token: "t"},
			ok: true,
			want: Job{Source: "slurm", Coordinator: "node07:29500", Token: "t", JobID: "slurm-12.0", Rank: 0, World: 4,
				NodeRank: 0, HostCoordinator: true},
		},
		{
			name: "slurm batch script is not a worker",
			env:  map[string]string{"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_ID": "12"},
		},
		{
			name: "user points slurm tasks at a coordinator",
			env: map[string]string{"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "1", "SLURM_NODELIST": "n1",
				"SLURM_JOB_ID": "3", "SLURM_STEP_ID": "0", Coordinator: "head:7000"},
			ok:   true,
			want: Job{Source: "slurm", Coordinator: "head:7000", JobID: "slurm-3.0", Rank: 1, LocalRank: 1, World: 2, NodeRank: -1},
		},
		{
			name: "kubernetes indexed job",
			env:  map[string]string{"JOB_COMPLETION_INDEX": "2", WorldSize: "4", Coordinator: "strand-0.strand:29500"},
			ok:   true,
			want: Job{Source: "kubernetes", Coordinator: "strand-0.strand:29500", JobID: "k8s", Rank: 2, NodeRank: 2, World: 4},
		},
		{
			name:    "kubernetes without world size",
			env:     map[string]string{"JOB_COMPLETION_INDEX": "2", Coordinator: "strand-0.strand:29500"},
			ok:      true,
			wantErr: "STRAND_WORLD_SIZE is not set",
		},
		{
			name: "torchrun",
			env:  map[string]string{"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "10.1.1.1", "MASTER_PORT": "1234", CoordinatorPort: "1240"},
			ok:   true,
			want: Job{Source: "torchrun", Coordinator: "10.1.1.1:1240", JobID: "torchrun", Rank: 1, LocalRank: 1, NodeRank: -1, World: 2},
		},
		{
			name:    "rank outside world",
			env:     map[string]string{"RANK": "5", "WORLD_SIZE": "2", "MASTER_ADDR": "h"},
			ok:      true,
			wantErr: "rank 5 outside world of 2",
		},
		{
			name:    "garbage number",
			env:     map[string]string{Coordinator: "h:1", LocalRank: "0", WorldSize: "four"},
			ok:      true,
			wantErr: `STRAND_WORLD_SIZE="four"`,
		},
		{
			name:    "bad mesh",
			env:     map[string]string{Coordinator: "h:1", LocalRank: "0", WorldSize: "4", Mesh: "2,2"},
			ok:      true,
			wantErr: "want dp,tp,pp",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := Detect(env(tc.env))
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v (err %v)", ok, tc.ok, err)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestExpandNodeList(t *testing.T) {
	cases := map[string][]string{
		"node1":               {"node1"},
		"gpu[01-03,7],login1": {"gpu01", "gpu02", "gpu03", "gpu7", "login1"},
		"a,b":                 {"a", "b"},
		"rack[1-2]-n[1-2]":    {"rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"},
		"x[009-011]":          {"x009", "x010", "x011"},
	}
	for in, want := range cases {
		got, err := ExpandNodeList(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ExpandNodeList(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a[1-", "a[3-1]", "a]", "a[x]"} {
		if _, err := ExpandNodeList(bad); err == nil {
			t.Errorf("ExpandNodeList(%q) accepted", bad)
		}
	}
}
