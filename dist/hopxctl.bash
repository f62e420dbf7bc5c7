# bash completion for hopxctl                              -*- shell-script -*-
#
# Commands and their flags are listed here (tests/integration/
# test_install.py checks the list against `hopxctl help`); sandbox ids and
# names come from the running agent, asked with a 2 s limit so that a
# stuck agent never stalls the shell. Needs bash only, not the
# bash-completion package.

_hopxctl_commands="attach create detach doctor env events export help import keepalive kill
label list ls metrics pause policy proxy reconcile rename resume run show start status stop
timeout token version wait"
_hopxctl_statuses="creating running paused stopped gone unknown"

# Ids and local names of the tracked sandboxes: `hopxctl ls` into a pipe
# prints tab-separated id, name, ...
_hopxctl_refs()
{
	local -a cmd=("$1")
	[ -n "$2" ] && cmd+=(--socket "$2")
	timeout 2 "${cmd[@]}" ls 2>/dev/null |
		while IFS=$'\t' read -r id name _; do
			printf '%s\n' "$id"
			[ "$name" != "-" ] && printf '%s\n' "$name"
		done
}

_hopxctl_flags()
{
	case $1 in
	attach) echo "--name --label --no-resume --idle-pause --on-expiry" ;;
	create) echo "--template --name --label --timeout --region --env --idle-pause --on-expiry" ;;
	events) echo "--since -f" ;;
	export) echo "--with-tokens -o" ;;
	label) echo "--rm" ;;
	ls | list) echo "--status --label -q" ;;
	policy) echo "--auto-resume --pause-on-shutdown --idle-pause --on-expiry" ;;
	proxy) echo "--listen --unix" ;;
	reconcile) echo "--last" ;;
	rename) echo "--clear" ;;
	run) echo "--min-ttl --token-file --" ;;
	token) echo "--min-ttl --rejected" ;;
	wait) echo "--for --timeout" ;;
	doctor) echo "--api-key-file" ;;
	esac
}

# Commands whose first argument is a sandbox (REF).
_hopxctl_takes_ref()
{
	case $1 in
	detach | env | keepalive | kill | label | pause | policy | rename | \
		resume | run | show | start | stop | timeout | token | wait)
		return 0 ;;
	esac
	return 1
}

_hopxctl()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local i word cmd="" socket="" nargs=0

	COMPREPLY=()
	# Find the command (the first word that is no option or option value)
	# and count the arguments typed after it.
	for ((i = 1; i < COMP_CWORD; i++)); do
		word=${COMP_WORDS[i]}
		if [ -z "$cmd" ]; then
			case $word in
			--socket) socket=${COMP_WORDS[i+1]}; ((i++)) ;;
			-*) ;;
			*) cmd=$word ;;
			esac
		elif [ "$word" = "--" ]; then
			return 0 # run's command: leave it to the default completion
		elif [[ $word != -* ]]; then
			((nargs++))
		fi
	done

	case $prev in
	--socket | --api-key-file)
		COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
	--status | --for)
		COMPREPLY=($(compgen -W "$_hopxctl_statuses" -- "$cur")); return 0 ;;
	--auto-resume | --pause-on-shutdown)
		COMPREPLY=($(compgen -W "on off" -- "$cur")); return 0 ;;
	--name | --label | --template | --timeout | --region | --env | --since | \
		--min-ttl | --rm)
		return 0 ;;
	esac

	if [ -z "$cmd" ]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--socket --json --help --version" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$_hopxctl_commands" -- "$cur"))
		fi
		return 0
	fi
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$(_hopxctl_flags "$cmd") --help" -- "$cur"))
	elif [ "$cmd" = help ] && [ $nargs = 0 ]; then
		COMPREPLY=($(compgen -W "$_hopxctl_commands" -- "$cur"))
	elif [ "$cmd" = keepalive ] && [ $nargs = 1 ]; then
		COMPREPLY=($(compgen -W "off" -- "$cur"))
	elif _hopxctl_takes_ref "$cmd" && [ $nargs = 0 ]; then
		COMPREPLY=($(compgen -W "$(_hopxctl_refs "${COMP_WORDS[0]}" "$socket")" -- "$cur"))
	fi
	return 0
}
complete -F _hopxctl hopxctl
