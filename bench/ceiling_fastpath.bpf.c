// SPDX-License-Identifier: GPL-2.0
/*
 * An experiment of bench/overlay_ceiling.py, not part of spanwire's data plane:
 * a tc fast path for the routing namespace, in the spirit of nf_flow_table
 * (which this test kernel lacks).
 *
 * A TCP segment of a conntrack entry that is confirmed, assured and not NATed
 * skips the namespace's IP stack and netfilter: the FIB gives next hop and
 * MACs, TTL drops by one, and the packet is redirected straight to the egress
 * device (from a tap: usually the VXLAN device) or into the peer of the tap
 * (from the VXLAN device: the VM, without another backlog queue). SYN, FIN and
 * RST always take the slow path, so conntrack sees every state change; the
 * entry's timeout is refreshed here because conntrack no longer sees the data.
 * From a tap, the sender must own its source (the FIB's route back to the
 * source leaves by this tap, and the neighbour entry has the source MAC),
 * which is what port security checks on the slow path.
 *
 * It answers one question: is netfilter and forwarding what keeps the overlay
 * below the raw underlay here? (It was not: see bench/results/dataplane.md.)
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define AF_INET 2
#define TCP_ESTABLISHED_MS 432000000u /* nf_conntrack_tcp_timeout_established's default */

struct nf_conn {
	unsigned long status;
} __attribute__((preserve_access_index));

struct bpf_ct_opts { /* the 16-byte layout of kernels since 6.14 */
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
	__u16 ct_zone_id;
	__u8 ct_zone_dir;
	__u8 reserved[3];
};

extern struct nf_conn *bpf_skb_ct_lookup(struct __sk_buff *, struct bpf_sock_tuple *, __u32,
					 struct bpf_ct_opts *, __u32) __ksym;
extern void bpf_ct_release(struct nf_conn *) __ksym;
extern int bpf_ct_change_timeout(struct nf_conn *, __u32) __ksym;

/* IPS_ASSURED, IPS_CONFIRMED must be set; SRC_NAT, DST_NAT, SEQ_ADJUST, DYING, HELPER not */
#define CT_MUST ((1UL << 2) | (1UL << 3))
#define CT_MUST_NOT ((1UL << 4) | (1UL << 5) | (1UL << 6) | (1UL << 9) | (1UL << 13))

/* packets taken, and why the others took the slow path */
enum {
	HIT_FABRIC, HIT_TAP, SLOW_OTHER, SLOW_FLAGS, SLOW_SOURCE, SLOW_NO_CT, SLOW_CT_STATE, SLOW_FIB,
	NSTATS
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NSTATS);
	__type(key, __u32);
	__type(value, __u64);
} fp_stats SEC(".maps");

static __always_inline int count(__u32 key, int verdict)
{
	__u64 *v = bpf_map_lookup_elem(&fp_stats, &key);

	if (v)
		(*v)++;
	return verdict;
}

static __always_inline int owns_source(struct __sk_buff *skb, struct ethhdr *eth, __be32 saddr)
{
	struct bpf_fib_lookup fib = {};

	fib.family = AF_INET;
	fib.ipv4_dst = saddr;
	fib.ifindex = skb->ingress_ifindex;
	if (bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_DIRECT) != BPF_FIB_LKUP_RET_SUCCESS)
		return 0;
	return fib.ifindex == skb->ingress_ifindex &&
	       *(__u32 *)fib.dmac == *(__u32 *)eth->h_source &&
	       *(__u16 *)(fib.dmac + 4) == *(__u16 *)(eth->h_source + 4);
}

static __always_inline int fast(struct __sk_buff *skb, int from_tap)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *th = (void *)(ip + 1);
	struct bpf_sock_tuple tuple = {};
	struct bpf_fib_lookup fib = {};
	struct bpf_ct_opts opts = {.netns_id = -1, .l4proto = IPPROTO_TCP};
	struct nf_conn *ct;
	unsigned long status;
	__u32 csum;

	if ((void *)(th + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if (ip->ihl != 5 || ip->protocol != IPPROTO_TCP || (ip->frag_off & bpf_htons(0x3fff)) ||
	    ip->ttl <= 1)
		return count(SLOW_OTHER, TC_ACT_OK);
	if (th->syn || th->fin || th->rst)
		return count(SLOW_FLAGS, TC_ACT_OK);
	if (from_tap && !owns_source(skb, eth, ip->saddr))
		return count(SLOW_SOURCE, TC_ACT_OK);
	tuple.ipv4.saddr = ip->saddr;
	tuple.ipv4.daddr = ip->daddr;
	tuple.ipv4.sport = th->source;
	tuple.ipv4.dport = th->dest;
	ct = bpf_skb_ct_lookup(skb, &tuple, sizeof(tuple.ipv4), &opts, sizeof(opts));
	if (!ct)
		return count(SLOW_NO_CT, TC_ACT_OK);
	status = ct->status;
	if ((status & CT_MUST) != CT_MUST || (status & CT_MUST_NOT)) {
		bpf_ct_release(ct);
		return count(SLOW_CT_STATE, TC_ACT_OK);
	}
	bpf_ct_change_timeout(ct, TCP_ESTABLISHED_MS);
	bpf_ct_release(ct);

	fib.family = AF_INET;
	fib.ipv4_src = ip->saddr;
	fib.ipv4_dst = ip->daddr;
	fib.tos = ip->tos;
	fib.l4_protocol = IPPROTO_TCP;
	fib.ifindex = skb->ingress_ifindex;
	if (bpf_fib_lookup(skb, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
		return count(SLOW_FIB, TC_ACT_OK);
	csum = ip->check + bpf_htons(0x0100); /* TTL - 1, incremental checksum (RFC 1624) */
	ip->check = (__u16)(csum + (csum >= 0xffff));
	ip->ttl--;
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	if (from_tap)
		return count(HIT_TAP, bpf_redirect(fib.ifindex, 0));
	return count(HIT_FABRIC, bpf_redirect_peer(fib.ifindex, 0));
}

SEC("classifier/tap")
int from_tap(struct __sk_buff *skb)
{
	return fast(skb, 1);
}

SEC("classifier/fabric")
int from_fabric(struct __sk_buff *skb)
{
	return fast(skb, 0);
}

char LICENSE[] SEC("license") = "GPL";
