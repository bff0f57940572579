//! openraft's async runtime for Warren's groups: Tokio, except that a group without ticks
//! runs no tick task at all.
//!
//! openraft (alpha.34, `core/tick.rs`) spawns one tick task per group that wakes every
//! `heartbeat_interval * 13 / 64` ms even when `enable_tick` is off, only to find ticks
//! disabled. Queue groups are supervised and single-member groups elect themselves once, so
//! neither ever needs a tick (`durable.rs`, `GroupOptions::supervised`); yet with 10,000 queues
//! those empty wake-ups alone cost a node a large part of a core (`docs/benchmarks.md`, "idle
//! quorum queues"). While a group without ticks is created, [`without_ticks`] marks the task,
//! and [`Runtime::spawn`] then does not run openraft's tick loop: it drops it (its handle's
//! shutdown signal then finds no receiver, which openraft ignores) and hands back a finished
//! task. Everything else is Tokio's own (`openraft_rt_tokio`).
//!
//! The tick loop is recognized by its type's name; a unit test opens a group without ticks
//! and checks that one was recognized, so an openraft upgrade that renames it fails loudly.

use openraft::AsyncRuntime;
use openraft::OptionalSend;
use openraft_rt_tokio::TokioRuntime;
use std::any::Any;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

tokio::task_local! {
    /// Set while a group whose ticks are off is created.
    static WITHOUT_TICKS: bool;
}

/// Tick loops not run since the process started (for the test that guards the name match).
static SKIPPED: AtomicU64 = AtomicU64::new(0);

/// Runs `f` (a group's creation) so that the tick loop it spawns is skipped when `skip`.
pub(crate) async fn without_ticks<F: Future>(skip: bool, f: F) -> F::Output {
    WITHOUT_TICKS.scope(skip, f).await
}

/// How many tick loops were skipped so far.
#[cfg(test)]
pub(crate) fn skipped() -> u64 {
    SKIPPED.load(Ordering::Relaxed)
}

/// Whether `T` is openraft's tick loop (`Tick::tick_loop`, instrumented).
fn is_tick_loop<T>() -> bool {
    let name = std::any::type_name::<T>();
    name.contains("openraft::core::tick::Tick<") && name.contains("tick_loop")
}

/// `()` as an `O`, when `O` is `()`.
fn unit<O: 'static>() -> Option<O> {
    let unit: Box<dyn Any> = Box::new(());
    unit.downcast::<O>().ok().map(|b| *b)
}

/// Tokio, without the tick tasks of groups that take no ticks.
#[derive(Debug)]
pub struct Runtime(TokioRuntime);

type Tokio = TokioRuntime;

impl AsyncRuntime for Runtime {
    type JoinError = <Tokio as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Tokio as AsyncRuntime>::Sleep;
    type Instant = <Tokio as AsyncRuntime>::Instant;
    type TimeoutError = <Tokio as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <Tokio as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = <Tokio as AsyncRuntime>::ThreadLocalRng;
    type Mpsc = <Tokio as AsyncRuntime>::Mpsc;
    type Watch = <Tokio as AsyncRuntime>::Watch;
    type Oneshot = <Tokio as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::Mutex<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        if WITHOUT_TICKS.try_with(|s| *s).unwrap_or(false) && is_tick_loop::<T>() {
            if let Some(done) = unit::<T::Output>() {
                drop(future);
                SKIPPED.fetch_add(1, Ordering::Relaxed);
                return Tokio::spawn(async move { done });
            }
        }
        Tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Tokio::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Tokio::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        Tokio::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        Tokio::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Tokio::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        Tokio::thread_rng()
    }

    fn new(threads: usize) -> Self {
        Self(Tokio::new(threads))
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.0.block_on(future)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_unit_type_is_unit() {
        assert_eq!(unit::<()>(), Some(()));
        assert_eq!(unit::<u8>(), None);
    }

    #[tokio::test]
    async fn other_tasks_run_even_while_ticks_are_skipped() {
        let h = without_ticks(true, async { Runtime::spawn(async { 7 }) }).await;
        assert_eq!(h.await.ok(), Some(7));
    }
}
