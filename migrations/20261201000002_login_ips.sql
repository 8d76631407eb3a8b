-- Addresses each account has logged in from with the right password (IPv4 addresses,
-- IPv6 /64s: the rate-limit bucket). A correct password from one of them is let through
-- while failures from elsewhere have the account locked, so an attacker guessing
-- passwords cannot lock the owner out. In the database, not in a process, so every web
-- process knows them and a deploy does not forget them.
CREATE TABLE login_ips (
    user_id        bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    ip             text NOT NULL CONSTRAINT login_ips_ip_length CHECK (length(ip) <= 64),
    last_login_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, ip)
);
