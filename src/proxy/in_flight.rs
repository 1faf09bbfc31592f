//! Caps on requests that hold an upstream connection, so that clients who stop reading
//! cannot multiply the gateway's upstream connections and memory: a slot of the request's
//! own client connection (HTTP/2 streams share one), then its client address's share, then
//! one of the whole gateway. Also the stall limit on writing proxied responses.
//!
//! A request takes its [`UpstreamSlot`] before its first upstream attempt and keeps it until
//! its context is dropped (after logging); dropping the slot gives both places back. This
//! file decides nothing about routes or instances (`select.rs` does).
//!
//! Per connection, a request waits for a slot (a browser's page load on one HTTP/2
//! connection queues briefly, as it would on six HTTP/1 connections) for at most
//! `client_stall_timeout`: by then a stalled holder has been cut, so a longer wait means the
//! connection's own slots are busy with slow downloads. Waiting is bounded too, gateway-wide
//! and per client address, so that memory does not grow with the connections an attacker
//! opens: beyond the bound a request is refused at once. Per client address and
//! gateway-wide, a request is refused at once: waiting there would let a flood of stalled
//! streams queue everyone else. When the gateway's slots are contended, an address also
//! keeps to its fair share and the last slots are kept for addresses holding few
//! (`fair_share.rs` says the rules; the count of addresses holding a slot is kept here,
//! with the table's entries).

use pingora_proxy::Session;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ctx::RequestCtx;
use super::error::GatewayError;
use super::fair_share::FairShare;
use super::release;
use crate::config::InFlightLimits;
use crate::metrics::UpstreamLoad;

/// What a client told to come back later is told: the stall limit frees slots within
/// seconds, so a short wait is honest.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The longest the refusal's answer (a head and about 150 bytes of JSON) may wait for its
/// client. A client that reads takes no time for it; one whose stream window is 0 would
/// otherwise keep the refused stream (about 25 KB) for the stall limit, so that memory grew
/// with the streams an attacker opens (600 connections × 100 streams: 1.7 GB). The head
/// is not flow-controlled: even a cut answer tells its status and `Retry-After`.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_millis(200);

/// A client connection: its two ends are unique among connections open at once.
type ConnKey = (SocketAddr, SocketAddr);

/// The per-connection slots of every client connection that has a request waiting for or
/// holding an upstream connection. One per proxy service (a connection belongs to one).
#[derive(Default)]
pub struct ConnectionSlots {
    conns: Mutex<HashMap<ConnKey, ConnEntry>>,
}

struct ConnEntry {
    slots: Arc<Semaphore>,
    /// Requests holding or waiting for one of `slots`; the entry goes when none is left.
    users: usize,
}

impl ConnectionSlots {
    /// Joins the connection's entry (made with `limit` slots if it is new).
    fn join(&self, key: ConnKey, limit: usize) -> Arc<Semaphore> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let entry = conns.entry(key).or_insert_with(|| ConnEntry {
            slots: Arc::new(Semaphore::new(limit)),
            users: 0,
        });
        entry.users += 1;
        entry.slots.clone()
    }

    fn leave(&self, key: ConnKey) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = conns.get_mut(&key) {
            entry.users -= 1;
            if entry.users == 0 {
                conns.remove(&key);
            }
        }
    }

    /// Connections with an entry now (for tests).
    pub fn connections(&self) -> usize {
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// What each client address holds and waits for: the per-client cap's table. One for the
/// whole gateway (shared by its proxy services); an address has an entry only while it has
/// a request holding or waiting, so the table is no larger than the requests in it.
/// Sharded so that requests of different clients rarely meet on one lock.
pub struct ClientSlots {
    shards: [Mutex<ClientMap>; CLIENT_SHARDS],
    /// Addresses holding at least one slot: changed with an entry's holding count (under
    /// its shard's lock), so the fair share is one atomic read, not a scan.
    holders: AtomicUsize,
}

/// A shard's entries. foldhash, seeded per process: SipHash cost a few hundred
/// instructions a request here (an entry is found twice per request).
type ClientMap = HashMap<IpAddr, ClientEntry, foldhash::fast::RandomState>;

/// Enough shards that the proxy's threads seldom wait on each other.
const CLIENT_SHARDS: usize = 16;

#[derive(Default)]
struct ClientEntry {
    holding: usize,
    waiting: usize,
}

/// Which count of a client's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Holding,
    Waiting,
}

impl Default for ClientSlots {
    fn default() -> Self {
        ClientSlots {
            shards: std::array::from_fn(|_| Mutex::default()),
            holders: AtomicUsize::new(0),
        }
    }
}

impl ClientSlots {
    fn shard(&self, ip: IpAddr) -> &Mutex<ClientMap> {
        &self.shards[address_shard(ip, CLIENT_SHARDS)]
    }

    /// Counts one more `what` for `ip` if `admit` allows it given the count `ip` has;
    /// returns that count (before this one).
    fn try_add(&self, ip: IpAddr, what: Use, admit: impl FnOnce(usize) -> bool) -> Option<usize> {
        let mut map = self.shard(ip).lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(ip).or_default();
        let n = match what {
            Use::Holding => &mut entry.holding,
            Use::Waiting => &mut entry.waiting,
        };
        let before = *n;
        if admit(before) {
            *n += 1;
            if what == Use::Holding && before == 0 {
                self.holders.fetch_add(1, Ordering::Relaxed);
            }
            return Some(before);
        }
        if entry.holding == 0 && entry.waiting == 0 {
            // A refused first request (a cap of 0, or a rule that refuses an empty
            // entry): never kept empty.
            map.remove(&ip);
        }
        None
    }

    fn remove(&self, ip: IpAddr, what: Use) {
        let mut map = self.shard(ip).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = map.get_mut(&ip) {
            let n = match what {
                Use::Holding => &mut entry.holding,
                Use::Waiting => &mut entry.waiting,
            };
            if what == Use::Holding && *n == 1 {
                self.holders.fetch_sub(1, Ordering::Relaxed);
            }
            *n = n.saturating_sub(1);
            if entry.holding == 0 && entry.waiting == 0 {
                map.remove(&ip);
            }
        }
    }

    /// Addresses holding at least one slot now.
    pub fn holders(&self) -> usize {
        self.holders.load(Ordering::Relaxed)
    }

    /// Client addresses with an entry now (for tests).
    pub fn clients(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// Which of `shards` tables keyed by client address holds `ip`: the low bits of the
/// address, cheap, and where clients differ most. Also used by the connection cap's table
/// (`src/listener/client_conns.rs`).
pub fn address_shard(ip: IpAddr, shards: usize) -> usize {
    let low = match ip {
        IpAddr::V4(v4) => v4.octets()[3] as usize ^ v4.octets()[2] as usize,
        IpAddr::V6(v6) => v6.octets()[15] as usize ^ v6.octets()[7] as usize,
    };
    low % shards
}

/// A request's count in its client's entry, taken back when dropped.
struct ClientUse {
    owner: Arc<ClientSlots>,
    ip: IpAddr,
    what: Use,
    /// What the entry counted before this one.
    before: usize,
}

impl ClientUse {
    fn take(owner: &Arc<ClientSlots>, ip: IpAddr, what: Use, cap: usize) -> Option<Self> {
        Self::take_if(owner, ip, what, |n| n < cap)
    }

    fn take_if(
        owner: &Arc<ClientSlots>,
        ip: IpAddr,
        what: Use,
        admit: impl FnOnce(usize) -> bool,
    ) -> Option<Self> {
        let before = owner.try_add(ip, what, admit)?;
        Some(ClientUse {
            owner: owner.clone(),
            ip,
            what,
            before,
        })
    }
}

impl Drop for ClientUse {
    fn drop(&mut self) {
        self.owner.remove(self.ip, self.what);
    }
}

/// A request's place among those waiting for a slot (gateway-wide and, with a per-client
/// cap, its client's), given back when dropped.
struct Waiting {
    load: Arc<UpstreamLoad>,
    _client: Option<ClientUse>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.load.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request's place in the connection's entry, left when dropped.
struct Joined {
    owner: Arc<ConnectionSlots>,
    key: ConnKey,
}

impl Drop for Joined {
    fn drop(&mut self) {
        self.owner.leave(self.key);
    }
}

/// A request's right to hold an upstream connection; both caps get it back when dropped.
pub struct UpstreamSlot {
    load: Arc<UpstreamLoad>,
    _client: Option<ClientUse>,
    // Field order is drop order: the permit goes back before the entry is left.
    _permit: Option<OwnedSemaphorePermit>,
    _joined: Option<Joined>,
}

impl Drop for UpstreamSlot {
    fn drop(&mut self) {
        let before = self.load.in_flight.fetch_sub(1, Ordering::AcqRel);
        release::after_release(&self.load, before.saturating_sub(1));
    }
}

/// Why a request got no slot, with what to tell the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub error: GatewayError,
    pub retry_after: Duration,
}

/// The tables a request's slot is counted in: its connection's and its client's.
pub struct Tables<'a> {
    pub conns: &'a Arc<ConnectionSlots>,
    pub clients: &'a Arc<ClientSlots>,
    pub load: &'a Arc<UpstreamLoad>,
}

/// Takes a slot for the request on `session` from `client` (its address, see
/// `ctx.client.ip`): first one of its client connection (HTTP/2 only: an HTTP/1 connection
/// has one request at a time), then one of its client's share, then one of the gateway.
pub async fn take(
    session: &Session,
    client: Option<IpAddr>,
    t: &Tables<'_>,
    limits: &InFlightLimits,
) -> Result<UpstreamSlot, Refused> {
    let refused = Refused {
        error: GatewayError::Overloaded,
        retry_after: RETRY_AFTER,
    };
    let load = t.load;
    let per_client = limits.max_upstream_requests_per_client;
    let client = client.filter(|_| per_client > 0);
    // Declared in this order so that, dropped on a refusal, the permit goes back before
    // the connection's entry is left.
    let mut joined = None;
    let mut permit = None;
    if let Some(key) = connection_key(session) {
        let slots = t
            .conns
            .join(key, limits.max_upstream_requests_per_connection);
        joined = Some(Joined {
            owner: t.conns.clone(),
            key,
        });
        permit = match slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                let _waiting = wait_in_line(load, t.clients, client, limits).ok_or(refused)?;
                let wait = tokio::time::timeout(limits.client_stall_timeout, slots.acquire_owned());
                match wait.await {
                    Ok(Ok(p)) => Some(p),
                    // Timed out (the semaphore is never closed).
                    _ => {
                        load.refused_connection.fetch_add(1, Ordering::Relaxed);
                        return Err(refused);
                    }
                }
            }
        };
    }
    // With no per-client cap the fair-share rules are off too (no address is counted).
    let fair = FairShare::new(limits);
    let client_use = match client {
        Some(ip) => Some(hold_share(t, ip, per_client, &fair).ok_or(refused)?),
        None => None,
    };
    let holding = client_use.as_ref().map_or(0, |u| u.before);
    let cap = limits.max_upstream_requests;
    let taken = load
        .in_flight
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            let admitted = match client_use {
                Some(_) => fair.gateway_admits(n, holding),
                None => n < cap,
            };
            admitted.then_some(n + 1)
        });
    match taken {
        Ok(before) => release::note_level(load, before + 1),
        Err(n) => {
            // Below the cap, only the reserve refused it.
            let counter = if n < cap {
                &load.refused_reserve
            } else {
                &load.refused_gateway
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return Err(refused);
        }
    }
    Ok(UpstreamSlot {
        load: load.clone(),
        _client: client_use,
        _permit: permit,
        _joined: joined,
    })
}

/// Counts a slot in `ip`'s entry if it holds fewer than `cap` and, under contention, fewer
/// than its fair share; `None` (counted) otherwise.
fn hold_share(t: &Tables<'_>, ip: IpAddr, cap: usize, fair: &FairShare) -> Option<ClientUse> {
    let load = t.load;
    let mut over_cap = false;
    let admit = |n: usize| {
        over_cap = n >= cap;
        let in_use = load.in_flight.load(Ordering::Relaxed);
        !over_cap && fair.within_share(n, in_use, t.clients.holders())
    };
    let taken = ClientUse::take_if(t.clients, ip, Use::Holding, admit);
    if taken.is_none() {
        let counter = if over_cap {
            &load.refused_client
        } else {
            &load.refused_fair_share
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    taken
}

/// A place among the requests waiting for a slot of their connection: gateway-wide, and
/// within the client's share (the per-client cap bounds its waiting requests as it bounds
/// its holding ones). `None` (counted) when either is full: the request is refused at once.
fn wait_in_line(
    load: &Arc<UpstreamLoad>,
    clients: &Arc<ClientSlots>,
    client: Option<IpAddr>,
    limits: &InFlightLimits,
) -> Option<Waiting> {
    let cap = limits.max_waiting_upstream_requests;
    let room = load
        .waiting
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < cap).then_some(n + 1)
        });
    if room.is_err() {
        load.refused_waiting.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let mut waiting = Waiting {
        load: load.clone(),
        _client: None,
    };
    if let Some(ip) = client {
        let share = limits.max_upstream_requests_per_client;
        match ClientUse::take(clients, ip, Use::Waiting, share) {
            Some(u) => waiting._client = Some(u),
            None => {
                load.refused_client.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
    }
    Some(waiting)
}

/// Makes sure the request holds a slot before an upstream attempt (the first one takes it,
/// retries keep it). On refusal the client is told when to come back, and its small answer
/// gets [`REFUSAL_WRITE_TIMEOUT`]: a refused stalled stream must not linger.
pub async fn hold(
    session: &mut Session,
    ctx: &mut RequestCtx,
    tables: &Tables<'_>,
) -> Result<(), GatewayError> {
    if ctx.upstream.slot.is_some() {
        return Ok(());
    }
    let limits = ctx.runtime.config.gateway.limits.in_flight;
    match take(session, ctx.client.ip, tables, &limits).await {
        Ok(slot) => {
            ctx.upstream.slot = Some(slot);
            Ok(())
        }
        Err(r) => {
            ctx.upstream.retry_after = Some(r.retry_after);
            let send = ctx.runtime.config.gateway.limits.send_timeout;
            let limit = response_write_timeout(send, &limits).min(REFUSAL_WRITE_TIMEOUT);
            session.set_write_timeout(Some(limit));
            Err(r.error)
        }
    }
}

/// Counts a proxied response cut for its client's stall (the write deadline of
/// [`response_write_timeout`] passed).
pub fn count_stall(ctx: &RequestCtx, load: &UpstreamLoad, err: GatewayError) {
    if err == GatewayError::ClientNotReading && ctx.upstream.slot.is_some() {
        load.stalled.fetch_add(1, Ordering::Relaxed);
    }
}

/// The connection an HTTP/2 stream belongs to; `None` for HTTP/1 (and for a socket
/// without inet addresses, which ficus does not listen on).
fn connection_key(session: &Session) -> Option<ConnKey> {
    if !session.as_downstream().is_http2() {
        return None;
    }
    let client = session.client_addr()?.as_inet()?;
    let server = session.server_addr()?.as_inet()?;
    Some((*client, *server))
}

/// How long one write of a proxied response may wait for the client: the stall limit,
/// never longer than `send_timeout`. pingora applies it to each piece of the body (what one
/// upstream read returned, at most 64 KiB), so a download that moves a piece within the
/// limit is never cut; one slower than about 64 KiB per `client_stall_timeout` is.
pub fn response_write_timeout(send_timeout: Duration, limits: &InFlightLimits) -> Duration {
    limits.client_stall_timeout.min(send_timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_entry_lives_while_it_has_users() {
        let slots = Arc::new(ConnectionSlots::default());
        let key: ConnKey = (
            "127.0.0.1:1000".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap(),
        );
        let a = slots.join(key, 2);
        let b = slots.join(key, 2);
        assert!(Arc::ptr_eq(&a, &b), "one entry per connection");
        assert_eq!(slots.connections(), 1);
        slots.leave(key);
        assert_eq!(slots.connections(), 1);
        slots.leave(key);
        assert_eq!(slots.connections(), 0);
    }

    #[test]
    fn a_client_entry_is_capped_and_removed_at_zero() {
        let clients = Arc::new(ClientSlots::default());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let a = ClientUse::take(&clients, ip, Use::Holding, 2).unwrap();
        let b = ClientUse::take(&clients, ip, Use::Holding, 2).unwrap();
        assert!(ClientUse::take(&clients, ip, Use::Holding, 2).is_none());
        // Waiting has its own count in the same entry.
        let w = ClientUse::take(&clients, ip, Use::Waiting, 2).unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let c = ClientUse::take(&clients, other, Use::Holding, 2).unwrap();
        assert_eq!(clients.clients(), 2);
        assert_eq!(clients.holders(), 2);
        drop((a, w, c));
        assert_eq!(clients.clients(), 1);
        assert_eq!(clients.holders(), 1, "one address still holds one");
        // Waiting alone does not make an address a holder.
        let w = ClientUse::take(&clients, other, Use::Waiting, 2).unwrap();
        assert_eq!(clients.holders(), 1);
        drop((b, w));
        assert_eq!(clients.clients(), 0);
        assert_eq!(clients.holders(), 0);
        assert!(ClientUse::take(&clients, ip, Use::Holding, 0).is_none());
        assert_eq!(
            clients.clients(),
            0,
            "a refused first request leaves no entry"
        );
    }

    #[test]
    fn waiting_is_bounded_gateway_wide() {
        let load = Arc::new(UpstreamLoad::default());
        let clients = Arc::new(ClientSlots::default());
        let limits = InFlightLimits {
            max_waiting_upstream_requests: 2,
            max_upstream_requests_per_client: 0,
            ..InFlightLimits::default()
        };
        let a = wait_in_line(&load, &clients, None, &limits).unwrap();
        let _b = wait_in_line(&load, &clients, None, &limits).unwrap();
        assert!(wait_in_line(&load, &clients, None, &limits).is_none());
        assert_eq!(load.refused_waiting.load(Ordering::Relaxed), 1);
        drop(a);
        assert_eq!(load.waiting.load(Ordering::Relaxed), 1);
        assert!(wait_in_line(&load, &clients, None, &limits).is_some());
    }

    #[test]
    fn the_stall_limit_never_exceeds_send_timeout() {
        let limits = InFlightLimits::default();
        assert_eq!(
            response_write_timeout(Duration::from_secs(60), &limits),
            Duration::from_secs(15)
        );
        assert_eq!(
            response_write_timeout(Duration::from_secs(5), &limits),
            Duration::from_secs(5)
        );
    }
}
