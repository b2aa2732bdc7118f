//! Admin password hashing with argon2id, off the async runtime.

use std::sync::mpsc::RecvTimeoutError;
use std::sync::OnceLock;
use std::time::Duration;

use argon2::password_hash::{
    self, rand_core::OsRng, Output, ParamsString, PasswordHash, Salt, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::error::{Error, Result};

pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 128;

/// The memory argon2 works in: allocated once on the argon2 thread, then reused.
type Memory = Vec<Block>;

/// The output of `argon2` for `password` and `salt`, computed in `memory`.
fn compute(
    argon2: &Argon2<'_>,
    memory: &mut Memory,
    password: &[u8],
    salt: Salt<'_>,
) -> password_hash::Result<Output> {
    let mut salt_bytes = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_bytes)?;
    let blocks = argon2.params().block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let length = argon2
        .params()
        .output_len()
        .unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    // NOTE: leftovers of an earlier hash do no harm: argon2's first pass writes every block
    // before any is read.
    Output::init_with(length, |out| {
        Ok(argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])?)
    })
}

/// A PHC string (`$argon2id$v=19$m=…`) for `password` with a random salt, as
/// `Argon2::default().hash_password` makes it.
fn hash_in(memory: &mut Memory, password: &str) -> Result<String> {
    let internal = |e: password_hash::Error| Error::Internal(format!("argon2: {e}"));
    let salt = SaltString::generate(&mut OsRng);
    let argon2 = Argon2::default();
    let output = compute(&argon2, memory, password.as_bytes(), salt.as_salt()).map_err(internal)?;
    let hash = PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params: ParamsString::try_from(argon2.params()).map_err(internal)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches a PHC string, with the parameters the string names.
fn verify_in(memory: &mut Memory, password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(version), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        parsed
            .version
            .map_or(Ok(Version::default()), Version::try_from),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params);
    // `Output`'s comparison takes the same time wherever the outputs differ.
    compute(&argon2, memory, password.as_bytes(), salt).is_ok_and(|output| output == expected)
}

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// How long the argon2 buffer is kept after the last hash: a burst of logins reuses it.
const KEEP_MEMORY: Duration = if cfg!(test) {
    Duration::from_millis(50)
} else {
    Duration::from_secs(10)
};

/// Runs argon2 work on the one thread kept for it, off the async runtime.
///
/// NOTE: argon2id as configured works in 19 MiB. Allocated for each hash on tokio's blocking
/// pool, glibc kept those pages after the first few frees (its mmap threshold rises to the
/// size freed): a dozen admin logins grew the server from 12 to over 100 MiB, and a burst of
/// logins took 19 MiB each at once. One thread with one reused buffer holds 19 MiB while
/// logins come, leaves the other cores to the API, and lets the buffer go once logins stop
/// (the sweeper then hands its pages back to the kernel, see `memory`).
async fn on_argon2_thread<T: Send + 'static>(
    work: impl FnOnce(&mut Memory) -> T + Send + 'static,
) -> Result<T> {
    static QUEUE: OnceLock<std::sync::mpsc::Sender<Job>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("argon2".into())
            .spawn(move || {
                let mut memory = Memory::new();
                loop {
                    let next = match rx.recv_timeout(KEEP_MEMORY) {
                        Ok(job) => Ok(job),
                        Err(RecvTimeoutError::Timeout) => {
                            memory = Memory::new();
                            rx.recv()
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    };
                    let Ok(job) = next else { return };
                    // A panicking job must not take the thread (and every later login) along.
                    let run = std::panic::AssertUnwindSafe(|| job(&mut memory));
                    let _ = std::panic::catch_unwind(run);
                }
            })
            .expect("the argon2 thread starts");
        tx
    });
    let (done, result) = tokio::sync::oneshot::channel();
    queue
        .send(Box::new(move |memory: &mut Memory| {
            let _ = done.send(work(memory));
        }))
        .map_err(|_| Error::Internal("the argon2 thread has stopped".into()))?;
    result
        .await
        .map_err(|_| Error::Internal("the argon2 job failed".into()))
}

/// Hashes a password with argon2id and a random salt.
pub async fn hash(password: String) -> Result<String> {
    on_argon2_thread(move |memory| hash_in(memory, &password)).await?
}

/// A hash to verify against when the user does not exist, so an unknown user name costs the
/// same argon2 work as a wrong password and names do not leak by timing.
fn decoy_hash(memory: &mut Memory) -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let secret: [u8; 16] = rand::random();
        hash_in(memory, &hex::encode(secret)).expect("argon2 hashes a fixed-size input")
    })
}

/// Checks a password against a stored hash, or against a decoy when there is none.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    on_argon2_thread(move |memory| match stored {
        Some(stored) => verify_in(memory, &password, &stored),
        None => {
            let decoy = decoy_hash(memory);
            let _ = verify_in(memory, &password, decoy);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// Why a new password is refused, if it is.
pub fn check_new(new: &str, confirm: &str) -> Result<(), String> {
    let chars = new.chars().count();
    if new != confirm {
        return Err("the two new passwords differ".into());
    }
    if chars < MIN_LENGTH {
        return Err(format!(
            "the new password needs at least {MIN_LENGTH} characters"
        ));
    }
    if chars > MAX_LENGTH {
        return Err(format!(
            "the new password may have at most {MAX_LENGTH} characters"
        ));
    }
    if new == crate::db::admins::DEFAULT_PASSWORD {
        return Err("choose a password other than the default one".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_the_right_password_only() {
        let h = hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse".into(), Some(h.clone())).await);
        assert!(!verify("wrong horse".into(), Some(h)).await);
    }

    #[tokio::test]
    async fn passwords_verify_again_after_the_idle_argon2_thread_let_its_memory_go() {
        let h = hash("correct horse".into()).await.unwrap();
        tokio::time::sleep(KEEP_MEMORY * 3).await;
        assert!(verify("correct horse".into(), Some(h.clone())).await);
        tokio::time::sleep(KEEP_MEMORY * 3).await;
        assert!(!verify("wrong horse".into(), Some(h)).await);
    }

    #[tokio::test]
    async fn hashes_are_those_of_the_argon2_crate() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let ours = hash("correct horse".into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            ours.split('$').take(4).collect::<Vec<_>>(),
            theirs.split('$').take(4).collect::<Vec<_>>()
        );
        assert!(verify("correct horse".into(), Some(theirs.clone())).await);
        assert!(!verify("wrong horse".into(), Some(theirs)).await);
        // Other parameters than ours (an older hash) still verify, in the same memory.
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"old password", &salt)
        .unwrap()
        .to_string();
        assert!(verify("old password".into(), Some(small)).await);
        assert!(!verify("x".into(), Some("not a hash".into())).await);
    }

    #[tokio::test]
    async fn unknown_user_never_verifies() {
        assert!(!verify("anything".into(), None).await);
    }

    #[test]
    fn new_password_rules() {
        assert!(check_new("longenough", "longenough").is_ok());
        assert!(check_new("short", "short").is_err());
        assert!(check_new("longenough", "different1").is_err());
        assert!(check_new("admin123", "admin123").is_err());
    }
}
