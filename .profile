# Heroku runs this in every dyno (web, worker, release) before the Procfile's command:
# the Rust buildpack leaves the binaries in target/release, and the Procfile names them
# as the contract does (`web serve`, `worker`, `web migrate`).
export PATH="$HOME/target/release:$PATH"
