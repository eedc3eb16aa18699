# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_shadowgate_global_optspecs
    string join \n h/help V/version
end

function __fish_shadowgate_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_shadowgate_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_shadowgate_using_subcommand
    set -l cmd (__fish_shadowgate_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c shadowgate -n "__fish_shadowgate_needs_command" -s h -l help -d 'Print help'
complete -c shadowgate -n "__fish_shadowgate_needs_command" -s V -l version -d 'Print version'
complete -c shadowgate -n "__fish_shadowgate_needs_command" -f -a "replay" -d 'Replay pcap/pcapng files and print one observation per DNS question, TLS/QUIC ClientHello and HTTP request'
complete -c shadowgate -n "__fish_shadowgate_needs_command" -f -a "events" -d 'Query the event store'
complete -c shadowgate -n "__fish_shadowgate_needs_command" -f -a "deliver" -d 'Deliver stored events to the configured SIEM sinks (until caught up, or forever with --follow)'
complete -c shadowgate -n "__fish_shadowgate_needs_command" -f -a "report" -d 'Write one ISO week\'s shadow-AI report (HTML with charts, CSV, JSON) from the event store'
complete -c shadowgate -n "__fish_shadowgate_needs_command" -f -a "policy" -d 'Validate or query a policy directory'
complete -c shadowgate -n "__fish_shadowgate_needs_command" -f -a "catalog" -d 'The service catalogue: list its services, compare two catalogues'
complete -c shadowgate -n "__fish_shadowgate_needs_command" -f -a "check" -d 'Check the whole setup before going live (config, policy, ports, interfaces, kernel, capabilities, store, portal CA, upstreams, sinks); exit 0 ok, 1 warnings, 2 errors'
complete -c shadowgate -n "__fish_shadowgate_needs_command" -f -a "run" -d 'Run the gateway daemon: capture live, decide, record, enforce, answer DNS'
complete -c shadowgate -n "__fish_shadowgate_needs_command" -f -a "break-glass" -d 'Turn enforcement off at once (on), back on (off), or show it (status)'
complete -c shadowgate -n "__fish_shadowgate_needs_command" -f -a "portal" -d 'The steering portal: make its name-constrained CA, show a CA\'s constraints'
complete -c shadowgate -n "__fish_shadowgate_needs_command" -f -a "docs" -d 'Write the manual pages and shell completions (what the Debian package ships)'
complete -c shadowgate -n "__fish_shadowgate_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand replay" -l format -d 'Output format' -r -f -a "json\t''
table\t''"
complete -c shadowgate -n "__fish_shadowgate_using_subcommand replay" -l max-flows -d 'Flow table limit (oldest flows are evicted beyond it)' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand replay" -l max-names -d 'DNS name cache limit (server addresses)' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand replay" -l threads -d 'Threads to replay on: flows are sharded by their address pair (both directions and every fragment on one thread), DNS and DHCP are read by every thread, and the output is merged back into capture order. --max-flows is shared between them' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand replay" -l policy -d 'Decide about each observation with the policy in this directory (policy.toml and catalog/). It is reloaded on SIGHUP and when its files change' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand replay" -l emit -d 'With --policy: print every observation (with its decision when there is one), or only the decision events' -r -f -a "all\t'Every observation, with its decision when there is one'
decisions\t'Only observations that got a decision'"
complete -c shadowgate -n "__fish_shadowgate_using_subcommand replay" -l config -d 'Configuration file (sensor id, policy, event store, SIEM sinks): decisions are recorded in the store and delivered to the sinks' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand replay" -l store -d 'Record decisions in this event store (overrides the configuration\'s)' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand replay" -l drain-timeout -d 'Seconds to keep delivering to the sinks after the replay before leaving the rest in the store' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand replay" -l keep-going -d 'On a corrupt or truncated file, report it, count what was skipped and go on'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand replay" -l stats -d 'Print the sensor\'s counters as JSON on stderr at the end'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand replay" -s q -l quiet -d 'Do not print the one-line summary on stderr'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand replay" -l print-commits -d 'Print each committed store sequence on stderr (crash tests)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand replay" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand events" -l store -d 'Event store file (or give --config)' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand events" -l config -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand events" -l since -d 'From this time (RFC 3339, or an age such as 7d, 24h)' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand events" -l until -d 'Until this time (RFC 3339, or an age)' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand events" -l service -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand events" -l client -l device -d 'Client IP, MAC or host name (`--device` is the same)' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand events" -l action -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand events" -l group -d 'Events of clients in this group (the policy\'s client groups)' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand events" -l severity -d 'Events at or above this severity: info, low, medium, high, critical' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand events" -l limit -d 'At most this many events (with --follow: the newest this many before following)' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand events" -l format -r -f -a "table\t''
json\t''
csv\t''"
complete -c shadowgate -n "__fish_shadowgate_using_subcommand events" -l poll-ms -d 'With --follow: how often to look for new events, in milliseconds' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand events" -s f -l follow -d 'Keep printing new events as they are stored, until Ctrl-C. Without --since it starts with the newest 10 matching events (or --limit), as `tail -f` does'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand events" -s h -l help -d 'Print help'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand deliver" -l config -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand deliver" -l timeout -d 'Give up after this many seconds when not following' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand deliver" -l follow -d 'Keep running and deliver new events as they are recorded'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand deliver" -s h -l help -d 'Print help'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand report" -l week -d 'ISO week in the clinic\'s time zone, e.g. 2026-W47 (default: the last complete week)' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand report" -l config -d 'Configuration file: [store] path, [policy] dir (BAA status), [report] settings' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand report" -l store -d 'Event store file (instead of the configuration\'s [store] path)' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand report" -l policy -d 'Policy directory whose catalogue gives each service\'s BAA status (default: [policy] dir)' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand report" -l out -d 'Output folder (created 0700; files 0600). Default: [report] out_dir/<week>' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand report" -l inventory -d 'Device inventory CSV: mac and/or hostname, owner, department, location' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand report" -l timezone -d 'The clinic\'s time zone (IANA name), overriding [report] timezone' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand report" -l visit-gap -d 'Visit gap in minutes, overriding [report] visit_gap_minutes' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand report" -l pseudonymise -d 'Replace host names, MACs, addresses and owners with keyed pseudonyms ([report] pseudonymise_secret_file) and leave out justification texts'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand report" -l mail -d 'E-mail the report as [report.smtp] says'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand report" -s h -l help -d 'Print help'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand policy; and not __fish_seen_subcommand_from check explain help" -s h -l help -d 'Print help'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand policy; and not __fish_seen_subcommand_from check explain help" -f -a "check" -d 'Check the catalogue and the policy (exit 0 if valid, 1 with file:line:column errors if not)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand policy; and not __fish_seen_subcommand_from check explain help" -f -a "explain" -d 'Show the service a name matches, the rule that fires for a client, the action, and why'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand policy; and not __fish_seen_subcommand_from check explain help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand policy; and __fish_seen_subcommand_from check" -l config -d 'Take the policy directory from this configuration\'s [policy] dir' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand policy; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand policy; and __fish_seen_subcommand_from explain" -l client -d 'Client IP address (selects client groups)' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand policy; and __fish_seen_subcommand_from explain" -l mac -d 'Client MAC address' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand policy; and __fish_seen_subcommand_from explain" -l hostname -d 'Client DHCP host name' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand policy; and __fish_seen_subcommand_from explain" -l evidence -d 'How the name was seen: on the wire, or inferred from whose DNS lookup' -r -f -a "wire\t''
own_lookup\t''
resolver_lookup\t''
other_client\t''
unmatched_answer\t''"
complete -c shadowgate -n "__fish_shadowgate_using_subcommand policy; and __fish_seen_subcommand_from explain" -l dir -d 'Policy directory (default: ./policies if there, else [policy] dir of /etc/shadowgate/shadowgate.toml, else /etc/shadowgate/policies)' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand policy; and __fish_seen_subcommand_from explain" -l config -d 'Take the policy directory from this configuration\'s [policy] dir' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand policy; and __fish_seen_subcommand_from explain" -s h -l help -d 'Print help'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "check" -d 'Check the catalogue and the policy (exit 0 if valid, 1 with file:line:column errors if not)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "explain" -d 'Show the service a name matches, the rule that fires for a client, the action, and why'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand catalog; and not __fish_seen_subcommand_from list diff help" -s h -l help -d 'Print help'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand catalog; and not __fish_seen_subcommand_from list diff help" -f -a "list" -d 'List the catalogued services: id, category, vendor, BAA summary, domain count'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand catalog; and not __fish_seen_subcommand_from list diff help" -f -a "diff" -d 'What changed from catalogue A to catalogue B: services added, removed, and those whose category or domains changed (exit 0 whatever the differences)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand catalog; and not __fish_seen_subcommand_from list diff help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand catalog; and __fish_seen_subcommand_from list" -l category -d 'Only services of this category' -r -f -a "consumer_ai\t''
enterprise_ai_api\t''
approved_route\t''
dns_resolver\t''
ai_coding\t''
ai_media\t''
ai_meeting\t''
ai_clinical\t''
general_platform\t''"
complete -c shadowgate -n "__fish_shadowgate_using_subcommand catalog; and __fish_seen_subcommand_from list" -l format -r -f -a "table\t''
json\t''"
complete -c shadowgate -n "__fish_shadowgate_using_subcommand catalog; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand catalog; and __fish_seen_subcommand_from diff" -l format -r -f -a "table\t''
json\t''"
complete -c shadowgate -n "__fish_shadowgate_using_subcommand catalog; and __fish_seen_subcommand_from diff" -s h -l help -d 'Print help'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand catalog; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the catalogued services: id, category, vendor, BAA summary, domain count'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand catalog; and __fish_seen_subcommand_from help" -f -a "diff" -d 'What changed from catalogue A to catalogue B: services added, removed, and those whose category or domains changed (exit 0 whatever the differences)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand catalog; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand check" -l config -d 'Configuration file to check' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand check" -l format -d 'Output: one line per finding grouped by check, or a JSON array of {check, severity, message, fix}' -r -f -a "table\t''
json\t''"
complete -c shadowgate -n "__fish_shadowgate_using_subcommand check" -l fail-on -d 'Which findings make the exit status non-zero' -r -f -a "warn\t'Exit 1 on warnings, 2 on errors'
error\t'Exit 0 on warnings, 2 on errors (what the unit\'s ExecStartPre= uses)'"
complete -c shadowgate -n "__fish_shadowgate_using_subcommand check" -s q -l quiet -d 'Table output: leave out the findings that are ok'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand run" -l config -d 'Configuration file (see deploy/shadowgate.toml)' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand run" -s h -l help -d 'Print help'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand break-glass" -l config -d 'Configuration file (its [enforce] break_glass_file is used)' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand break-glass" -l reason -d 'Who and why, kept in the file for the record' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand break-glass" -l cleanup -d 'Delete a table `inet shadowgate` a stopped daemon left behind (systemd\'s ExecStopPost); a running daemon\'s table is not touched'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand break-glass" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand portal; and not __fish_seen_subcommand_from ca constraints help" -s h -l help -d 'Print help'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand portal; and not __fish_seen_subcommand_from ca constraints help" -f -a "ca" -d 'Make the portal CA: ECDSA P-256, name constraints permitting only the domains some steer or coach rule selects, never the approved route, enterprise AI APIs or DNS resolvers (and no IP address). Writes portal-ca.pem (install it on workstations) and portal-ca.key (mode 0600; give it to the daemon\'s user: chown shadowgate:shadowgate)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand portal; and not __fish_seen_subcommand_from ca constraints help" -f -a "constraints" -d 'Print the DNS names a portal CA certificate may certify: its permitted subtrees, one a line, then `except NAME` for each excluded subtree inside them'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand portal; and not __fish_seen_subcommand_from ca constraints help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand portal; and __fish_seen_subcommand_from ca" -l out -d 'Directory to write portal-ca.pem and portal-ca.key into (created if missing)' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand portal; and __fish_seen_subcommand_from ca" -l policy -d 'Policy directory whose steer and coach rules bound the CA (or give --config)' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand portal; and __fish_seen_subcommand_from ca" -l config -d 'shadowgate configuration: its [policy] dir and [portal] clinic_name are used' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand portal; and __fish_seen_subcommand_from ca" -l days -d 'Validity of the CA in days' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand portal; and __fish_seen_subcommand_from ca" -l clinic -d 'Clinic name in the CA\'s subject (default: [portal] clinic_name of --config)' -r
complete -c shadowgate -n "__fish_shadowgate_using_subcommand portal; and __fish_seen_subcommand_from ca" -l force -d 'Replace existing files'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand portal; and __fish_seen_subcommand_from ca" -s h -l help -d 'Print help'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand portal; and __fish_seen_subcommand_from constraints" -s h -l help -d 'Print help'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand portal; and __fish_seen_subcommand_from help" -f -a "ca" -d 'Make the portal CA: ECDSA P-256, name constraints permitting only the domains some steer or coach rule selects, never the approved route, enterprise AI APIs or DNS resolvers (and no IP address). Writes portal-ca.pem (install it on workstations) and portal-ca.key (mode 0600; give it to the daemon\'s user: chown shadowgate:shadowgate)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand portal; and __fish_seen_subcommand_from help" -f -a "constraints" -d 'Print the DNS names a portal CA certificate may certify: its permitted subtrees, one a line, then `except NAME` for each excluded subtree inside them'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand portal; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand docs" -l out -d 'Folder to write `man/*.1` and `completions/` into (created if missing)' -r -F
complete -c shadowgate -n "__fish_shadowgate_using_subcommand docs" -s h -l help -d 'Print help'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and not __fish_seen_subcommand_from replay events deliver report policy catalog check run break-glass portal docs help" -f -a "replay" -d 'Replay pcap/pcapng files and print one observation per DNS question, TLS/QUIC ClientHello and HTTP request'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and not __fish_seen_subcommand_from replay events deliver report policy catalog check run break-glass portal docs help" -f -a "events" -d 'Query the event store'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and not __fish_seen_subcommand_from replay events deliver report policy catalog check run break-glass portal docs help" -f -a "deliver" -d 'Deliver stored events to the configured SIEM sinks (until caught up, or forever with --follow)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and not __fish_seen_subcommand_from replay events deliver report policy catalog check run break-glass portal docs help" -f -a "report" -d 'Write one ISO week\'s shadow-AI report (HTML with charts, CSV, JSON) from the event store'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and not __fish_seen_subcommand_from replay events deliver report policy catalog check run break-glass portal docs help" -f -a "policy" -d 'Validate or query a policy directory'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and not __fish_seen_subcommand_from replay events deliver report policy catalog check run break-glass portal docs help" -f -a "catalog" -d 'The service catalogue: list its services, compare two catalogues'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and not __fish_seen_subcommand_from replay events deliver report policy catalog check run break-glass portal docs help" -f -a "check" -d 'Check the whole setup before going live (config, policy, ports, interfaces, kernel, capabilities, store, portal CA, upstreams, sinks); exit 0 ok, 1 warnings, 2 errors'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and not __fish_seen_subcommand_from replay events deliver report policy catalog check run break-glass portal docs help" -f -a "run" -d 'Run the gateway daemon: capture live, decide, record, enforce, answer DNS'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and not __fish_seen_subcommand_from replay events deliver report policy catalog check run break-glass portal docs help" -f -a "break-glass" -d 'Turn enforcement off at once (on), back on (off), or show it (status)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and not __fish_seen_subcommand_from replay events deliver report policy catalog check run break-glass portal docs help" -f -a "portal" -d 'The steering portal: make its name-constrained CA, show a CA\'s constraints'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and not __fish_seen_subcommand_from replay events deliver report policy catalog check run break-glass portal docs help" -f -a "docs" -d 'Write the manual pages and shell completions (what the Debian package ships)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and not __fish_seen_subcommand_from replay events deliver report policy catalog check run break-glass portal docs help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "check" -d 'Check the catalogue and the policy (exit 0 if valid, 1 with file:line:column errors if not)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "explain" -d 'Show the service a name matches, the rule that fires for a client, the action, and why'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and __fish_seen_subcommand_from catalog" -f -a "list" -d 'List the catalogued services: id, category, vendor, BAA summary, domain count'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and __fish_seen_subcommand_from catalog" -f -a "diff" -d 'What changed from catalogue A to catalogue B: services added, removed, and those whose category or domains changed (exit 0 whatever the differences)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and __fish_seen_subcommand_from portal" -f -a "ca" -d 'Make the portal CA: ECDSA P-256, name constraints permitting only the domains some steer or coach rule selects, never the approved route, enterprise AI APIs or DNS resolvers (and no IP address). Writes portal-ca.pem (install it on workstations) and portal-ca.key (mode 0600; give it to the daemon\'s user: chown shadowgate:shadowgate)'
complete -c shadowgate -n "__fish_shadowgate_using_subcommand help; and __fish_seen_subcommand_from portal" -f -a "constraints" -d 'Print the DNS names a portal CA certificate may certify: its permitted subtrees, one a line, then `except NAME` for each excluded subtree inside them'
