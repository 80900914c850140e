//! Pod IPs for the mock: unique addresses from a CIDR, shared by every node of the process.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

/// Allocates IPv4 addresses from a CIDR, skipping the network and broadcast addresses.
pub struct IpAllocator {
    base: u32,
    size: u32,
    state: Mutex<(u32, BTreeSet<u32>)>,
}

impl IpAllocator {
    /// An allocator over `cidr` (e.g. `10.244.0.0/16`).
    pub fn new(cidr: &str) -> Result<IpAllocator, String> {
        let (addr, bits) = cidr
            .split_once('/')
            .ok_or_else(|| format!("pod CIDR {cidr:?} must be a.b.c.d/n"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("pod CIDR {cidr:?}: invalid address"))?;
        let bits: u32 = bits
            .parse()
            .map_err(|_| format!("pod CIDR {cidr:?}: invalid prefix length"))?;
        if !(8..=30).contains(&bits) {
            return Err(format!(
                "pod CIDR {cidr:?}: prefix length must be between 8 and 30"
            ));
        }
        let size = 1u32 << (32 - bits);
        let base = u32::from(addr) & !(size - 1);
        Ok(IpAllocator {
            base,
            size,
            state: Mutex::new((1, BTreeSet::new())),
        })
    }

    /// The next free address, or `None` when the range is exhausted.
    pub fn allocate(&self) -> Option<Ipv4Addr> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..self.size {
            let offset = s.0;
            s.0 = if offset + 1 >= self.size - 1 {
                1
            } else {
                offset + 1
            };
            if s.1.insert(offset) {
                return Some(Ipv4Addr::from(self.base + offset));
            }
        }
        None
    }

    /// Marks an address as used (after a restart from the state file).
    pub fn reserve(&self, ip: Ipv4Addr) {
        let v = u32::from(ip);
        if v > self.base && v < self.base + self.size - 1 {
            self.state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .1
                .insert(v - self.base);
        }
    }

    /// Returns an address to the pool.
    pub fn release(&self, ip: Ipv4Addr) {
        let v = u32::from(ip);
        if v > self.base {
            self.state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .1
                .remove(&(v - self.base));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_until_exhausted() {
        let a = IpAllocator::new("10.1.0.0/30").unwrap();
        let x = a.allocate().unwrap();
        let y = a.allocate().unwrap();
        assert_ne!(x, y);
        assert_eq!(a.allocate(), None);
        a.release(x);
        assert_eq!(a.allocate(), Some(x));
    }

    #[test]
    fn rejects_bad_cidrs() {
        for c in ["10.0.0.0", "10.0.0.0/33", "x/16", "10.0.0.0/31"] {
            assert!(IpAllocator::new(c).is_err(), "{c}");
        }
    }
}
